"""MQTT 3.1.1 packets as pure values: decode from bytes, encode to bytes. No sockets here.

Only what a device speaks to IoT Hub: CONNECT/CONNACK, PUBLISH (QoS 0/1)/PUBACK,
SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14


class ProtocolError(Exception):
    """The peer sent something this codec does not accept."""


@dataclass(frozen=True)
class Connect:
    protocol_level: int
    client_id: str
    username: str | None
    password: str | None
    keepalive: int
    clean_session: bool


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    filters: list[tuple[str, int]]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    filters: list[str]


@dataclass(frozen=True)
class Simple:
    """A packet that carries at most a packet id (PUBACK, PINGREQ, DISCONNECT, …)."""

    kind: int
    packet_id: int | None = None


Packet = Connect | Publish | Subscribe | Unsubscribe | Simple


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def split_frame(buffer: bytes) -> tuple[int, int, int] | None:
    """``(first byte, header length, body length)`` of the frame at the buffer start, or ``None``
    when more bytes are needed."""
    if len(buffer) < 2:
        return None
    multiplier, length, i = 1, 0, 1
    while True:
        if i >= len(buffer):
            return None
        byte = buffer[i]
        length += (byte & 0x7F) * multiplier
        i += 1
        if not byte & 0x80:
            return buffer[0], i, length
        multiplier *= 128
        if multiplier > 128**3:
            raise ProtocolError("remaining length too long")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + n].decode("utf-8"), pos + 2 + n


def _binary(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + n], pos + 2 + n


def _encode_string(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def decode(first: int, body: bytes) -> Packet:
    kind, flags = first >> 4, first & 0x0F
    if kind == CONNECT:
        name, pos = _string(body, 0)
        if name != "MQTT":
            raise ProtocolError(f"protocol name {name!r}")
        level, connect_flags = body[pos], body[pos + 1]
        (keepalive,) = struct.unpack_from("!H", body, pos + 2)
        if level != 4:
            # Not 3.1.1 (an MQTT 5 CONNECT has properties here): the server refuses it by level,
            # so its 3.1.1 payload must not be parsed.
            return Connect(level, "", None, None, keepalive, False)
        client_id, pos = _string(body, pos + 4)
        if connect_flags & 0x04:  # a will: topic and message
            _, pos = _string(body, pos)
            _, pos = _binary(body, pos)
        username = password = None
        if connect_flags & 0x80:
            username, pos = _string(body, pos)
        if connect_flags & 0x40:
            raw, pos = _binary(body, pos)
            password = raw.decode("utf-8")
        return Connect(level, client_id, username, password, keepalive, bool(connect_flags & 0x02))
    if kind == PUBLISH:
        qos = (flags >> 1) & 0x03
        topic, pos = _string(body, 0)
        packet_id = None
        if qos:
            (packet_id,) = struct.unpack_from("!H", body, pos)
            pos += 2
        return Publish(topic, body[pos:], qos, packet_id, bool(flags & 0x01), bool(flags & 0x08))
    if kind == SUBSCRIBE:
        (packet_id,) = struct.unpack_from("!H", body, 0)
        pos, filters = 2, []
        while pos < len(body):
            topic, pos = _string(body, pos)
            filters.append((topic, body[pos] & 0x03))
            pos += 1
        return Subscribe(packet_id, filters)
    if kind == UNSUBSCRIBE:
        (packet_id,) = struct.unpack_from("!H", body, 0)
        pos, names = 2, []
        while pos < len(body):
            topic, pos = _string(body, pos)
            names.append(topic)
        return Unsubscribe(packet_id, names)
    if kind in (PUBACK, UNSUBACK, SUBACK, CONNACK) and len(body) >= 2:
        return Simple(kind, struct.unpack_from("!H", body, 0)[0])
    if kind in (PINGREQ, PINGRESP, DISCONNECT):
        return Simple(kind)
    raise ProtocolError(f"unsupported packet type {kind}")


def encode(packet: Packet) -> bytes:
    if isinstance(packet, Publish):
        flags = (packet.qos << 1) | (0x01 if packet.retain else 0) | (0x08 if packet.dup else 0)
        body = _encode_string(packet.topic)
        if packet.qos:
            body += struct.pack("!H", packet.packet_id or 0)
        body += packet.payload
        return bytes([(PUBLISH << 4) | flags]) + encode_length(len(body)) + body
    if isinstance(packet, Connect):
        flags = 0x02 if packet.clean_session else 0
        payload = _encode_string(packet.client_id)
        if packet.username is not None:
            flags |= 0x80
            payload += _encode_string(packet.username)
        if packet.password is not None:
            flags |= 0x40
            payload += _encode_string(packet.password)
        body = (
            _encode_string("MQTT")
            + bytes([packet.protocol_level, flags])
            + struct.pack("!H", packet.keepalive)
        )
        body += payload
        return bytes([CONNECT << 4]) + encode_length(len(body)) + body
    if isinstance(packet, Subscribe):
        body = struct.pack("!H", packet.packet_id) + b"".join(
            _encode_string(t) + bytes([q]) for t, q in packet.filters
        )
        return bytes([(SUBSCRIBE << 4) | 0x02]) + encode_length(len(body)) + body
    if isinstance(packet, Unsubscribe):
        body = struct.pack("!H", packet.packet_id) + b"".join(_encode_string(t) for t in packet.filters)
        return bytes([(UNSUBSCRIBE << 4) | 0x02]) + encode_length(len(body)) + body
    if packet.packet_id is None:
        return bytes([packet.kind << 4, 0])
    return bytes([packet.kind << 4, 2]) + struct.pack("!H", packet.packet_id)


def connack(return_code: int, session_present: bool = False) -> bytes:
    return bytes([CONNACK << 4, 2, 1 if session_present else 0, return_code])


def suback(packet_id: int, granted: list[int]) -> bytes:
    body = struct.pack("!H", packet_id) + bytes(granted)
    return bytes([SUBACK << 4]) + encode_length(len(body)) + body


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` and ``#``."""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)
