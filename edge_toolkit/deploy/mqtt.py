"""Deploying to plain-MQTT agents: the desired state as a retained QoS 1 message.

Topic `<prefix>/<device>/state/desired` (docs/hub-protocol.md). Retained, so an agent that is
offline now gets it when it next subscribes. The desired state is the `edgekit` desired property of
the agent module's twin in the manifest, so one manifest serves IoT Edge and plain-MQTT fleets.
The only module here that imports paho.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edge_toolkit.errors import DeployError, MissingExtraError
from edge_toolkit.manifest.document import DESIRED, SYSTEM_KEYS, modules_content

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "edgekit"
STATE_KEY = "edgekit"


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @property
    def display(self) -> str:
        """The address without credentials (for logs and history)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """`mqtt://[user:password@]host[:1883]` or `mqtts://…[:8883]`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise DeployError(f"{url!r} is not a broker URL; write mqtt://host:1883 or mqtts://host:8883")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise DeployError(f"{url!r} has an invalid port") from exc
    return BrokerAddress(
        parts.hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def desired_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    if not device_id or any(c in device_id for c in "/+#"):
        raise DeployError(f"{device_id!r} is not a usable device id (no '/', '+' or '#')")
    return f"{prefix}/{device_id}/state/desired"


def desired_state(manifest: Mapping[str, Any], module: str | None = None) -> dict[str, Any]:
    """`{"edgekit": …}` from the module twin in the manifest that carries it.

    With several such modules, `module` must say which one.
    """
    content, base = modules_content(manifest)
    if content is None:
        raise DeployError(f"the manifest has no {base}; deploy a manifest from 'edgekit manifest gen'")
    carriers = {
        name: twin[DESIRED][STATE_KEY]
        for name, twin in content.items()
        if name not in SYSTEM_KEYS
        and isinstance(twin, dict)
        and isinstance(twin.get(DESIRED), dict)
        and STATE_KEY in twin[DESIRED]
    }
    if module is not None:
        if module not in carriers:
            raise DeployError(
                f"module {module!r} has no {STATE_KEY} desired properties in the manifest "
                f"(modules with them: {', '.join(sorted(carriers)) or 'none'})"
            )
        return {STATE_KEY: carriers[module]}
    if len(carriers) != 1:
        raise DeployError(
            f"the manifest has {len(carriers)} module twins with {STATE_KEY} desired properties "
            f"({', '.join(sorted(carriers)) or 'none'}); "
            + ("choose one with --module" if carriers else f"add {base}.<module>.{DESIRED}.{STATE_KEY}")
        )
    return {STATE_KEY: next(iter(carriers.values()))}


def publish_desired_state(
    url: str,
    device_id: str,
    state: Mapping[str, Any],
    *,
    prefix: str = DEFAULT_PREFIX,
    ca_file: Path | None = None,
    timeout_s: float = 10.0,
) -> str:
    """Publish `state` retained at QoS 1 and wait for the broker's PUBACK; return the topic."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MissingExtraError("paho-mqtt", "workspace") from exc
    address = parse_url(url)
    topic = desired_topic(device_id, prefix)
    payload = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    connected = threading.Event()
    published = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, rc: int) -> None:
        outcome["rc"] = rc
        connected.set()

    def on_publish(client: Any, userdata: Any, mid: int) -> None:
        # wait_for_publish is unreliable across reconnects; the PUBACK callback is the truth.
        if mid == outcome.get("mid"):
            published.set()

    client = mqtt.Client(client_id=f"edgekit-deploy-{uuid.uuid4().hex[:12]}", clean_session=True)
    client.on_connect = on_connect
    client.on_publish = on_publish
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    try:
        client.connect(address.host, address.port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise DeployError(f"cannot connect to {address.display}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise DeployError(f"{address.display} did not answer CONNECT within {timeout_s:.0f}s")
        if outcome["rc"] != 0:
            raise DeployError(
                f"{address.display} refused the connection: {mqtt.connack_string(outcome['rc'])}; "
                "check the user name and password in the URL"
            )
        info = client.publish(topic, payload, qos=1, retain=True)
        outcome["mid"] = info.mid
        if info.rc != 0:
            raise DeployError(f"cannot publish to {address.display}: {mqtt.error_string(info.rc)}")
        if info.is_published():  # PUBACK may have arrived before mid was stored
            published.set()
        if not published.wait(timeout_s):
            raise DeployError(
                f"{address.display} did not acknowledge the desired state within {timeout_s:.0f}s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    log.info(
        "desired state published",
        extra={"broker": address.display, "topic": topic, "bytes": len(payload)},
    )
    return topic
