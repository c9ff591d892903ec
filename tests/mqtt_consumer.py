"""A test-side MQTT client that records what arrives and can publish requests (paho 1.6)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.brokers import Broker


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None

    def json(self) -> Any:
        return json.loads(self.payload)


class Consumer:
    def __init__(
        self,
        broker: Broker,
        topics: list[str],
        client_id: str = "test-consumer",
        persistent: bool = False,
        mqtt5: bool = False,
        username: str | None = None,
        password: str | None = None,
        client_cert: tuple[Path, Path] | None = None,  # (certificate, key) for X.509 auth
    ) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._topics = topics
        self.mqtt5 = mqtt5
        if mqtt5:
            self.client = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
        else:
            self.client = paho.Client(client_id=client_id, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        if broker.tls:
            cert, key = (str(client_cert[0]), str(client_cert[1])) if client_cert else (None, None)
            self.client.tls_set(
                ca_certs=str(broker.ca_file), certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test consumer could not connect")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        with self._cond:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain), correlation))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = [m.topic for m in self.messages[-10:]]
                    raise AssertionError(f"timed out; last topics: {topics}")
                self._cond.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def publish(
        self,
        topic: str,
        payload: Any,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        properties = None
        if self.mqtt5 and (response_topic or correlation):
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
        self.client.publish(topic, body, qos=1, retain=retain, properties=properties).wait_for_publish(5)

    def pause(self) -> None:
        """Disconnect and stay away (a persistent session keeps collecting on the broker)."""
        self.client.loop_stop()
        self.client.disconnect()

    def resume(self) -> None:
        self._subscribed.clear()
        self.client.reconnect()
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test consumer could not reconnect")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
