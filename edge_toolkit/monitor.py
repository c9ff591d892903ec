"""A live view of a fleet from its health stream: one row per device.

Two sources feed one :class:`Fleet`:
  - plain MQTT: subscribe to ``P/+/health`` and ``P/+/status`` (the topics of
    ``docs/hub-protocol.md``); every full report updates its device's row and the ``seq`` check
    counts gaps (reports lost between the agent and the monitor).
  - IoT Hub: device-to-cloud telemetry needs an Event Hubs client, so the monitor polls the twins
    instead (``SELECT * FROM devices``) and reads the compact ``health`` summary each agent keeps in
    its reported properties.

:class:`Fleet` is pure (tests feed it reports); the sources are the only I/O here.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from edge_toolkit.errors import DeployError, EdgeKitError, MissingExtraError

log = logging.getLogger(__name__)


@dataclass
class DeviceRow:
    device_id: str
    status: str | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    models: list[str] = field(default_factory=list)
    seq: int | None = None
    gaps: int = 0  # reports missing from the seq sequence as seen by this monitor
    online: bool | None = None
    last_seen: float | None = None  # time.time() of the last report

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "status": self.status,
            "online": self.online,
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "models": self.models,
            "seq": self.seq,
            "gaps": self.gaps,
            "last_seen_s": None if self.last_seen is None else round(now - self.last_seen, 1),
        }


class Fleet:
    """Rows by device id; thread-safe (sources call in from their own threads)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._rows: dict[str, DeviceRow] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self.reports = 0

    def _row(self, device_id: str) -> DeviceRow:
        return self._rows.setdefault(device_id, DeviceRow(device_id))

    def observe_report(self, device_id: str, report: dict[str, Any]) -> None:
        """A full health report (telemetry)."""
        system = report.get("system") or {}
        models = [f"{m.get('name')}:{m.get('version')}" for m in report.get("models") or []]
        with self._lock:
            self.reports += 1
            row = self._row(device_id)
            seq = report.get("seq")
            if isinstance(seq, int):
                if row.seq is not None and seq > row.seq + 1:
                    row.gaps += seq - row.seq - 1
                if row.seq is None or seq > row.seq:
                    row.seq = seq
            row.status = report.get("status")
            row.cpu_percent = system.get("cpu_percent")
            row.memory_percent = (system.get("memory") or {}).get("percent")
            row.models = models
            row.last_seen = self._clock()
            row.online = True if row.online is None else row.online

    def observe_summary(self, device_id: str, summary: dict[str, Any], models: list[str]) -> None:
        """A compact summary (twin reported property ``health``)."""
        with self._lock:
            self.reports += 1
            row = self._row(device_id)
            row.status = summary.get("status")
            row.cpu_percent = summary.get("cpu_percent")
            row.memory_percent = summary.get("memory_percent")
            row.seq = summary.get("seq")
            row.models = models or list(summary.get("models") or [])
            row.last_seen = self._clock()

    def observe_online(self, device_id: str, online: bool) -> None:
        with self._lock:
            self._row(device_id).online = online

    def rows(self) -> list[DeviceRow]:
        with self._lock:
            return [DeviceRow(**vars(r)) for r in sorted(self._rows.values(), key=lambda r: r.device_id)]

    def snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [r.as_dict(now) for r in self.rows()]


def render(fleet: Fleet) -> Any:
    """A rich Table of the fleet."""
    from rich.table import Table
    from rich.text import Text

    colours = {"healthy": "green", "degraded": "yellow", "failing": "red"}
    table = Table(title="edgekit fleet", header_style="bold")
    for column in ("device", "status", "online", "cpu %", "mem %", "models", "seq", "gaps", "last seen"):
        table.add_column(column)
    for row in fleet.snapshot():
        status = row["status"] or "?"
        table.add_row(
            Text(row["device_id"]),
            Text(status, style=colours.get(status, "")),
            Text({True: "yes", False: "no", None: "?"}[row["online"]]),
            Text("" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}"),
            Text("" if row["memory_percent"] is None else f"{row['memory_percent']:.1f}"),
            Text(", ".join(row["models"])),
            Text(str(row["seq"] or "")),
            Text(str(row["gaps"])),
            Text("" if row["last_seen_s"] is None else f"{row['last_seen_s']}s ago"),
        )
    return table


class MqttSource:
    """Feeds a Fleet from ``P/+/health`` and ``P/+/status`` on a broker."""

    def __init__(
        self,
        fleet: Fleet,
        url: str,
        *,
        prefix: str = "edgekit",
        ca_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as paho
        except ImportError as exc:
            raise MissingExtraError("paho-mqtt", "workspace") from exc
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise EdgeKitError(f"--mqtt {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        self.fleet = fleet
        self.prefix = prefix
        self._paho = paho
        self._client = paho.Client(client_id=f"edgekit-monitor-{time.time_ns()}", clean_session=True)
        user = username or (unquote(parts.username) if parts.username else None)
        secret = password or (unquote(parts.password) if parts.password else None)
        if user:
            self._client.username_pw_set(user, secret)
        if parts.scheme == "mqtts" or ca_file:
            self._client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._host = parts.hostname
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.connected = threading.Event()

    def start(self) -> None:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise DeployError(f"cannot reach the broker at {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: int) -> None:
        if rc != 0:
            log.error("broker refused the monitor", extra={"code": rc})
            return
        client.subscribe([(f"{self.prefix}/+/health", 1), (f"{self.prefix}/+/status", 1)])
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        levels = message.topic[len(self.prefix) + 1 :].split("/")
        if len(levels) != 2:
            return
        device_id, kind = levels
        try:
            document = json.loads(message.payload)
        except ValueError:
            log.warning("ignoring a non-JSON message", extra={"topic": message.topic})
            return
        if not isinstance(document, dict):
            return
        if kind == "health":
            self.fleet.observe_report(device_id, document)
        elif kind == "status" and isinstance(document.get("online"), bool):
            self.fleet.observe_online(device_id, document["online"])


class HubSource:
    """Feeds a Fleet by polling IoT Hub twins (the agents' reported ``health`` and ``edgekit``)."""

    def __init__(self, fleet: Fleet, connection_string: str, interval_s: float = 5.0) -> None:
        try:
            from azure.iot.hub import IoTHubRegistryManager
        except ImportError as exc:
            raise MissingExtraError("azure-iot-hub", "workspace") from exc
        self.fleet = fleet
        self.interval_s = interval_s
        self._manager = IoTHubRegistryManager.from_connection_string(connection_string)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgekit-monitor-hub", daemon=True)

    def start(self) -> None:
        self.poll()  # fail fast on a wrong connection string
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        from azure.iot.hub.models import QuerySpecification

        try:
            result = self._manager.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"))
        except Exception as exc:  # the SDK raises msrest/requests errors of many kinds
            raise DeployError(f"cannot query the IoT Hub twins: {exc}") from exc
        for twin in result.items or []:
            reported = (twin.properties.reported if twin.properties else None) or {}
            health = reported.get("health")
            if not isinstance(health, dict):
                continue
            edgekit = reported.get("edgekit") or {}
            models = [f"{m.get('name')}:{m.get('version')}" for m in edgekit.get("models") or []]
            self.fleet.observe_summary(twin.device_id, health, models)
            state = getattr(twin, "connection_state", None)
            if state:
                self.fleet.observe_online(twin.device_id, state == "Connected")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except DeployError as exc:
                log.warning("twin poll failed", extra={"error": str(exc)})
