"""A local stand-in for IoT Hub's device endpoint: MQTT 3.1.1 over TLS on ``127.0.0.N:8883``.

Test code, run by the test suite; the real ``azure-iot-device`` SDK connects to it unpatched.
It speaks IoT Hub's dialect (``DESIGN.md`` §4): client id ``dev`` or ``dev/module``, user name
``{hub}/{client id}/?api-version=…``, a SAS token as password (checked against the keys of the
shared :class:`TwinStore`) or an X.509 client certificate whose CN is the device id; telemetry
and module outputs on ``devices/…/messages/events/{properties}``; twin GET / reported PATCH on
``$iothub/twin/…`` with ``$rid``; desired patches and direct methods pushed to subscribers;
module inputs on ``devices/{d}/modules/{m}/inputs/{name}/{properties}``.

Packets are encoded and decoded by :mod:`tests.hubsim.mqtt_packets`; this module is sockets,
threads and hub semantics. Like the real hub, it delivers only to subscribed topics and keeps no
session across connections.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tests.hubsim import mqtt_packets as mp
from tests.hubsim.twin_store import TwinStore
from tests.tls import TestCA

PORT = 8883  # IoT Hub's fixed MQTT port; every stand-in takes its own 127.0.0.N


def sas_signature(key_b64: str, resource_encoded: str, expiry: str) -> str:
    message = f"{resource_encoded}\n{expiry}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), message, hashlib.sha256).digest()).decode()


def parse_properties(segment: str) -> dict[str, str]:
    """``a=1&%24.ct=application%2Fjson`` -> ``{"a": "1", "$.ct": "application/json"}``."""
    return dict(urllib.parse.parse_qsl(segment, keep_blank_values=True))


def _query(topic: str) -> dict[str, str]:
    return parse_properties(topic.partition("?")[2])


@dataclass
class _Client:
    sock: ssl.SSLSocket
    device_id: str
    module_id: str | None
    subscriptions: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 0

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Deliver at QoS 1 when subscribed; returns whether it was delivered."""
        if not any(mp.topic_matches(f, topic) for f in self.subscriptions):
            return False
        with self.lock:
            self.next_id = self.next_id % 65535 + 1
            packet_id = self.next_id
        self.send(mp.encode(mp.Publish(topic, payload, qos=1, packet_id=packet_id)))
        return True


class IoTHubMqttServer:
    def __init__(self, store: TwinStore, ca: TestCA, host: str | None = None) -> None:
        self.store = store
        self.host = host or _free_loopback_address()
        cert = ca.server_cert(f"hub-{self.host}", [self.host, store.hostname])
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self._context.load_verify_locations(ca.ca_file)
        self._context.verify_mode = ssl.CERT_OPTIONAL  # X.509 devices present one; SAS devices do not
        self._server = socket.create_server((self.host, PORT), reuse_port=False)
        self._clients: dict[tuple[str, str | None], _Client] = {}
        # Subscriptions of clean_session=0 clients survive a reconnect, as on IoT Hub (the SDK
        # relies on this: it does not subscribe again after reconnecting).
        self._sessions: dict[tuple[str, str | None], list[str]] = {}
        self._lock = threading.Lock()
        self._method_waiters: dict[str, tuple[threading.Event, list[Any]]] = {}
        self._closed = False
        self.connections = 0  # successful CONNECTs, to observe reconnects
        store.set_method_handler(self._invoke_method)
        store.on_desired_patch(self._push_desired)
        self._thread = threading.Thread(target=self._accept, name=f"hubsim-{self.host}", daemon=True)
        self._thread.start()

    # lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Close every device connection (the SDK then reconnects): a network blip."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)
            client.sock.close()

    def connected(self, device_id: str, module_id: str | None = None) -> bool:
        with self._lock:
            return (device_id, module_id) in self._clients

    def wait_subscribed(self, device_id: str, module_id: str | None, topic: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                client = self._clients.get((device_id, module_id))
                if client and any(mp.topic_matches(f, topic) for f in client.subscriptions):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"{device_id}/{module_id} did not subscribe to {topic}")

    # service-side operations ------------------------------------------------------------------
    def send_to_input(
        self, device_id: str, module_id: str, input_name: str, payload: bytes, properties: dict[str, str]
    ) -> bool:
        """What edgeHub does for a route ``INTO BrokeredEndpoint("/modules/m/inputs/x")``."""
        with self._lock:
            client = self._clients.get((device_id, module_id))
        if client is None:
            return False
        encoded = urllib.parse.urlencode(properties)
        topic = f"devices/{device_id}/modules/{module_id}/inputs/{input_name}/{encoded}"
        return client.publish(topic, payload)

    def _push_desired(
        self, device_id: str, module_id: str | None, patch: dict[str, Any], version: int
    ) -> None:
        with self._lock:
            client = self._clients.get((device_id, module_id))
        if client is not None:
            body = json.dumps({**patch, "$version": version}).encode()
            client.publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}", body)

    def _invoke_method(
        self, device_id: str, module_id: str | None, name: str, payload: Any, timeout: float
    ) -> tuple[int, Any]:
        with self._lock:
            client = self._clients.get((device_id, module_id))
        rid = f"{random.getrandbits(32):x}"
        waiter: tuple[threading.Event, list[Any]] = (threading.Event(), [])
        self._method_waiters[rid] = waiter
        try:
            body = json.dumps(payload).encode()
            if client is None or not client.publish(f"$iothub/methods/POST/{name}/?$rid={rid}", body):
                return 404, {"message": f"{device_id} is not connected or not listening for methods"}
            if not waiter[0].wait(timeout):
                return 504, {"message": f"{device_id} did not answer {name} within {timeout}s"}
            return waiter[1][0], waiter[1][1]
        finally:
            self._method_waiters.pop(rid, None)

    # connections -----------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), name="hubsim-conn", daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        client: _Client | None = None
        buffer = b""
        try:
            while True:
                frame = mp.split_frame(buffer)
                if frame is None or len(buffer) < frame[1] + frame[2]:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                    continue
                first, header, length = frame
                body, buffer = buffer[header : header + length], buffer[header + length :]
                packet = mp.decode(first, body)
                if client is None:
                    if not isinstance(packet, mp.Connect):
                        return
                    client = self._connect(sock, packet)
                    if client is None:
                        return
                    continue
                if not self._handle(client, packet):
                    return
        except (OSError, mp.ProtocolError, ValueError):
            return
        finally:
            if client is not None:
                with self._lock:
                    if self._clients.get((client.device_id, client.module_id)) is client:
                        del self._clients[(client.device_id, client.module_id)]
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self, sock: ssl.SSLSocket, packet: mp.Connect) -> _Client | None:
        if packet.protocol_level != 4:
            sock.sendall(mp.connack(1))  # unacceptable protocol version: IoT Hub speaks 3.1.1
            return None
        device_id, _, module = packet.client_id.partition("/")
        module_id = module or None
        if not self._authenticated(sock, packet, device_id, module_id):
            sock.sendall(mp.connack(5))  # not authorised
            return None
        client = _Client(sock, device_id, module_id)
        with self._lock:
            if packet.clean_session:
                self._sessions.pop((device_id, module_id), None)
            session_present = (device_id, module_id) in self._sessions
            client.subscriptions = self._sessions.setdefault((device_id, module_id), [])
            previous = self._clients.pop((device_id, module_id), None)
            self._clients[(device_id, module_id)] = client
            self.connections += 1
        if previous is not None:  # IoT Hub drops the older connection of the same identity
            with contextlib.suppress(OSError):
                previous.sock.shutdown(socket.SHUT_RDWR)
        sock.sendall(mp.connack(0, session_present))
        return client

    def _authenticated(
        self, sock: ssl.SSLSocket, packet: mp.Connect, device_id: str, module_id: str | None
    ) -> bool:
        client_id = device_id if module_id is None else f"{device_id}/{module_id}"
        if not (packet.username or "").startswith(f"{self.store.hostname}/{client_id}/"):
            return False
        if packet.password:
            key = self.store.key_for(device_id, module_id)
            if key is None:
                return False
            fields = parse_properties(packet.password.removeprefix("SharedAccessSignature "))
            resource = f"{self.store.hostname}/devices/{device_id}"
            if module_id:
                resource += f"/modules/{module_id}"
            encoded = urllib.parse.quote(resource, safe="")
            if urllib.parse.unquote(fields.get("sr", "")).lower() != resource.lower():
                return False
            if int(fields.get("se", "0")) < time.time():
                return False
            return hmac.compare_digest(
                fields.get("sig", ""), sas_signature(key, encoded, fields.get("se", ""))
            )
        peer = sock.getpeercert()
        if not peer:
            return False
        subject = dict(item for rdn in peer.get("subject", ()) for item in rdn)
        return subject.get("commonName") == device_id and device_id in self.store.devices

    def _handle(self, client: _Client, packet: mp.Packet) -> bool:
        if isinstance(packet, mp.Publish):
            if packet.qos == 1 and packet.packet_id is not None:
                client.send(mp.encode(mp.Simple(mp.PUBACK, packet.packet_id)))
            self._on_publish(client, packet)
        elif isinstance(packet, mp.Subscribe):
            client.subscriptions.extend(topic for topic, _ in packet.filters)
            client.send(mp.suback(packet.packet_id, [min(q, 1) for _, q in packet.filters]))
        elif isinstance(packet, mp.Unsubscribe):
            client.subscriptions[:] = [t for t in client.subscriptions if t not in packet.filters]
            client.send(mp.encode(mp.Simple(mp.UNSUBACK, packet.packet_id)))
        elif isinstance(packet, mp.Simple):
            if packet.kind == mp.PINGREQ:
                client.send(mp.encode(mp.Simple(mp.PINGRESP)))
            elif packet.kind == mp.DISCONNECT:
                return False
        return True

    def _on_publish(self, client: _Client, packet: mp.Publish) -> None:
        topic = packet.topic
        base = f"devices/{client.device_id}"
        if client.module_id:
            base += f"/modules/{client.module_id}"
        if topic.startswith(f"{base}/messages/events/"):
            properties = parse_properties(topic[len(f"{base}/messages/events/") :])
            self.store.add_telemetry(client.device_id, client.module_id, packet.payload, properties)
        elif topic.startswith("$iothub/twin/GET/"):
            rid = _query(topic).get("$rid", "")
            twin = self.store.twin(client.device_id, client.module_id)
            document = twin.document(client.device_id, client.module_id)["properties"]
            client.publish(f"$iothub/twin/res/200/?$rid={rid}", json.dumps(document).encode())
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            rid = _query(topic).get("$rid", "")
            try:
                patch = json.loads(packet.payload)
            except ValueError:
                client.publish(f"$iothub/twin/res/400/?$rid={rid}", b"{}")
                return
            version = self.store.patch_reported(client.device_id, client.module_id, patch)
            client.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"")
        elif topic.startswith("$iothub/methods/res/"):
            status = int(topic.split("/")[3])
            rid = _query(topic).get("$rid", "")
            waiter = self._method_waiters.get(rid)
            if waiter is not None:
                waiter[1][:] = [status, json.loads(packet.payload) if packet.payload else None]
                waiter[0].set()


def _free_loopback_address() -> str:
    """A 127.0.0.N whose port 8883 is free (each stand-in takes its own address)."""
    for _ in range(200):
        host = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((host, PORT))
            except OSError:
                continue
            return host
    raise RuntimeError("no free 127.0.0.N:8883 address")
