"""Plain MQTT to any broker, with paho-mqtt 1.6 (the version azure-iot-device also needs).

paho runs its network loop in its own thread (``loop_start``) and reconnects by itself with a
capped exponential backoff; this module turns its callbacks into the transport's asyncio streams
and futures. Acks are tracked through ``on_publish`` by message id (``wait_for_publish`` is not
reliable for messages queued while offline). QoS 1 messages handed to paho while a connection
drops stay in paho's memory and are resent by paho after the reconnect; the outbox above keeps
its own copy until the ack, which covers a process death.

Protocol "auto" first speaks MQTT 5 and falls back to 3.1.1 when the broker refuses the protocol
version or closes the connection before its CONNACK.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_agent.config import MqttConfig
from device_agent.errors import ConfigError, HubError
from device_agent.hub import topics
from device_agent.hub.transport import CommandRequest, InferenceRequest, Telemetry, Transport, merge_patch

log = logging.getLogger(__name__)

# CONNACK codes meaning "I do not speak that protocol version" (3.1.1 and 5).
_BAD_PROTOCOL = {1, 132}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS; default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError("hub.mqtt.url", f"{url!r} is not an mqtt:// or mqtts:// URL with a host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError("hub.mqtt.url", f"{url!r} has an invalid port") from None
    return BrokerAddress(
        parts.hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class MqttTransport(Transport):
    name = "mqtt"

    def __init__(self, config: MqttConfig, device_id: str) -> None:
        super().__init__()
        self.config = config
        self.address = parse_url(config.url)
        self.scheme = topics.TopicScheme(config.topic_prefix, device_id)
        self.protocol = paho.MQTTv311 if config.protocol == "3.1.1" else paho.MQTTv5
        self._client: paho.Client | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early_acks: set[int] = set()
        self._reported: dict[str, Any] = {}
        self._got_connack = False
        self._closing = False

    # connection ------------------------------------------------------------------------------
    async def _start(self) -> None:
        await asyncio.to_thread(self._new_client)

    def _new_client(self) -> None:
        client = (
            paho.Client(client_id=self._client_id(), protocol=paho.MQTTv5)
            if self.protocol == paho.MQTTv5
            else paho.Client(client_id=self._client_id(), protocol=paho.MQTTv311, clean_session=True)
        )
        username = self.config.username or self.address.username
        password = self.config.password or self.address.password
        if self.config.password_env:
            password = os.environ.get(self.config.password_env, password)
        if username is not None:
            client.username_pw_set(username, password)
        if self.address.tls or self.config.ca_file or self.config.cert_file:
            try:
                client.tls_set(
                    ca_certs=self.config.ca_file,
                    certfile=self.config.cert_file,
                    keyfile=self.config.key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError) as exc:
                raise HubError(f"cannot set up TLS for {self.config.url}: {exc}") from exc
        client.will_set(self.scheme.status, json.dumps({"online": False}), qos=1, retain=True)
        # paho's default of 20 unacknowledged messages halves the replay rate after an outage.
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(
            min(1.0, self.config.reconnect_max_delay_s), self.config.reconnect_max_delay_s
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._got_connack = False
        self._client = client
        log.info(
            "connecting to MQTT broker",
            extra={"url": self.config.url, "protocol": "5" if self.protocol == paho.MQTTv5 else "3.1.1"},
        )
        if self.protocol == paho.MQTTv5:
            client.connect_async(
                self.address.host, self.address.port, self.config.keepalive_s, clean_start=True
            )
        else:
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s)
        client.loop_start()

    def _client_id(self) -> str:
        return self.config.client_id or self.scheme.device_id

    async def close(self) -> None:
        self._closing = True
        client = self._client
        if client is None:
            return
        if self.connected.is_set():
            try:
                async with asyncio.timeout(2.0):
                    await self._publish(self.scheme.status, {"online": False}, retain=True)
            except (TimeoutError, HubError):
                log.warning("could not publish the offline status before disconnecting")
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.connected.clear()
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(HubError("the MQTT transport was closed before the broker acked"))

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        code = int(rc.value) if hasattr(rc, "value") else int(rc)
        self._got_connack = True
        if code != 0:
            log.warning("broker refused the connection", extra={"url": self.config.url, "code": str(rc)})
            if code in _BAD_PROTOCOL:
                self._maybe_fall_back(client)
            return
        log.info("connected to MQTT broker", extra={"url": self.config.url})
        for topic in self.scheme.subscriptions():
            client.subscribe(topic, qos=1)
        client.publish(self.scheme.status, json.dumps({"online": True}), qos=1, retain=True)
        with self._lock:
            reported = json.dumps(self._reported) if self._reported else None
        if reported is not None:
            client.publish(self.scheme.state_reported, reported, qos=1, retain=True)
        self._set_connected(True)

    def _on_disconnect(self, client: paho.Client, userdata: Any, rc: Any, props: Any = None) -> None:
        self._set_connected(False)
        if not self._closing:
            log.warning("disconnected from MQTT broker", extra={"url": self.config.url, "code": str(rc)})
            if not self._got_connack:
                self._maybe_fall_back(client)

    def _maybe_fall_back(self, client: paho.Client) -> None:
        if self.config.protocol != "auto" or self.protocol != paho.MQTTv5 or self._closing:
            return
        log.info("broker does not take MQTT 5; falling back to 3.1.1", extra={"url": self.config.url})
        self.protocol = paho.MQTTv311
        # Stopping paho's thread from inside its own callback would join itself: do it from the loop.
        self._threadsafe(lambda: asyncio.ensure_future(self._restart(client)))

    async def _restart(self, old: paho.Client) -> None:
        old.disconnect()
        await asyncio.to_thread(old.loop_stop)
        if not self._closing:
            await asyncio.to_thread(self._new_client)

    # publishing ------------------------------------------------------------------------------
    def _publish(
        self, topic: str, payload: bytes | Mapping[str, Any], retain: bool = False, properties: Any = None
    ) -> asyncio.Future[None]:
        client = self._client
        if client is None:
            raise HubError("the MQTT transport is not started")
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        future: asyncio.Future[None] = self.loop.create_future()
        info = client.publish(topic, body, qos=1, retain=retain, properties=properties)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            # NO_CONN is fine: paho keeps QoS 1 messages and sends them after the reconnect.
            future.set_exception(HubError(f"MQTT publish to {topic} failed: {paho.error_string(info.rc)}"))
            return future
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                future.set_result(None)
            else:
                self._pending[info.mid] = future
        return future

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int) -> None:
        # Runs in paho's thread, possibly before _publish registered the mid (fast brokers).
        with self._lock:
            future = self._pending.pop(mid, None)
            if future is None:
                self._early_acks.add(mid)
                return
        self._threadsafe(_resolve, future)

    def send_telemetry(self, message: Telemetry) -> Awaitable[None]:
        topic = self.scheme.health if message.kind == "health" else f"{self.scheme.base}/{message.kind}"
        properties = None
        if self.protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = message.content_type
            if message.properties:
                properties.UserProperty = list(message.properties.items())
        return self._publish(topic, message.body, properties=properties)

    async def report_state(self, patch: Mapping[str, Any]) -> None:
        with self._lock:
            merge_patch(self._reported, patch)
            document = json.dumps(self._reported).encode()
        if self.connected.is_set():
            # Not awaited: a newer state replaces this one, and on_connect republishes the latest.
            self._publish(self.scheme.state_reported, document, retain=True)

    # receiving -------------------------------------------------------------------------------
    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        parsed = topics.parse(self.scheme.prefix, message.topic)
        if parsed is None or parsed.device_id != self.scheme.device_id:
            return
        if parsed.kind is topics.Kind.STATE_DESIRED:
            self._on_desired(message.payload)
        elif parsed.kind is topics.Kind.COMMAND and parsed.name is not None:
            self._on_command(parsed.name, message)
        elif parsed.kind is topics.Kind.INFER and parsed.name is not None:
            self._on_infer(parsed.name, message)

    def _on_desired(self, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            document = json.loads(payload)
        except ValueError:
            log.warning(
                "ignoring a desired state that is not JSON", extra={"topic": self.scheme.state_desired}
            )
            return
        if not isinstance(document, dict) or not isinstance(document.get("edgekit"), dict):
            log.warning("ignoring a desired state without an 'edgekit' object")
            return
        self._push_desired(document["edgekit"])

    def _reply_route(self, message: paho.MQTTMessage, default_topic: str, body_reply: Any) -> tuple[str, Any]:
        """Where a reply goes and its MQTT 5 properties: the response topic and correlation data
        of the request when present, else the ``reply_to`` of the body, else the default topic."""
        request_props = getattr(message, "properties", None)
        response_topic = getattr(request_props, "ResponseTopic", None) if request_props else None
        correlation = getattr(request_props, "CorrelationData", None) if request_props else None
        topic = response_topic or (
            body_reply if isinstance(body_reply, str) and body_reply else default_topic
        )
        properties = None
        if self.protocol == paho.MQTTv5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        return topic, properties

    def _on_command(self, name: str, message: paho.MQTTMessage) -> None:
        request_id: Any = None
        reply_to: Any = None
        try:
            body = json.loads(message.payload) if message.payload else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
            request_id, reply_to = body.get("id"), body.get("reply_to")
            payload: Any = body.get("payload", {})
            bad: str | None = None
        except ValueError:
            payload, bad = None, "the command message is not a JSON object"
        topic, properties = self._reply_route(message, self.scheme.command_response(name), reply_to)

        async def respond(status: int, result: Any) -> None:
            document = {"id": request_id, "status": status, "payload": result}
            await self._publish(topic, json.dumps(document).encode(), properties=properties)

        if bad is not None:
            self._threadsafe(lambda: asyncio.ensure_future(respond(400, {"error": bad})))
            return
        self._push_command(CommandRequest(name, payload, respond))

    def _on_infer(self, model: str, message: paho.MQTTMessage) -> None:
        body = message.payload
        reply_to: Any = None
        try:
            document = json.loads(body)
            if isinstance(document, dict) and "reply_to" in document:
                # MQTT 3.1.1 has no response topic: the request names one; the model must not see it.
                reply_to = document.pop("reply_to")
                body = json.dumps(document).encode()
        except ValueError:
            pass  # the host answers invalid JSON with a proper v2 error
        topic, properties = self._reply_route(message, self.scheme.infer_response(model), reply_to)

        async def respond(result: bytes) -> None:
            await self._publish(topic, result, properties=properties)

        self._push_inference(InferenceRequest(model, body, respond))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
