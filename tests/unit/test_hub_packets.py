from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.hubsim import mqtt_packets as mp

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def _roundtrip(packet: mp.Packet) -> mp.Packet:
    data = mp.encode(packet)
    frame = mp.split_frame(data)
    assert frame is not None
    first, header, length = frame
    assert header + length == len(data)
    return mp.decode(first, data[header:])


@given(text, st.binary(max_size=300), st.sampled_from([0, 1]), st.integers(1, 65535), st.booleans())
def test_publish_roundtrip(topic: str, payload: bytes, qos: int, packet_id: int, retain: bool) -> None:
    packet = mp.Publish(topic, payload, qos, packet_id if qos else None, retain)
    assert _roundtrip(packet) == packet


@given(text, st.none() | text, st.none() | text, st.integers(0, 65535), st.booleans())
def test_connect_roundtrip(
    client_id: str, user: str | None, password: str | None, keepalive: int, clean: bool
) -> None:
    packet = mp.Connect(4, client_id, user, password, keepalive, clean)
    assert _roundtrip(packet) == packet


@given(st.integers(1, 65535), st.lists(st.tuples(text, st.sampled_from([0, 1])), min_size=1, max_size=5))
def test_subscribe_roundtrip(packet_id: int, filters: list[tuple[str, int]]) -> None:
    assert _roundtrip(mp.Subscribe(packet_id, filters)) == mp.Subscribe(packet_id, filters)


@given(st.integers(0, 268_435_455))
def test_remaining_length_roundtrip(n: int) -> None:
    encoded = bytes([0x30]) + mp.encode_length(n)
    assert mp.split_frame(encoded) == (0x30, len(encoded), n)


def test_split_frame_waits_for_more_bytes() -> None:
    assert mp.split_frame(b"") is None
    assert mp.split_frame(bytes([0x30, 0x80])) is None  # the length continues in the next byte


def test_topic_filters() -> None:
    assert mp.topic_matches("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1")
    assert mp.topic_matches("a/+/c", "a/b/c") and not mp.topic_matches("a/+/c", "a/b/d")
    assert not mp.topic_matches("a/b", "a/b/c") and mp.topic_matches("a/#", "a")
