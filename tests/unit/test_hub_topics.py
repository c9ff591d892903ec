from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_agent.errors import HubError
from device_agent.hub.topics import Kind, Topic, TopicScheme, fleet_filter, parse

level = st.text(
    alphabet=st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
)
prefix = st.lists(level, min_size=1, max_size=3).map("/".join)


@given(prefix, level, st.sampled_from(list(Kind)), level)
def test_parse_inverts_build(p: str, device: str, kind: Kind, name: str) -> None:
    named = kind in (Kind.COMMAND, Kind.COMMAND_RESPONSE, Kind.INFER, Kind.INFER_RESPONSE)
    topic = Topic(device, kind, name if named else None)
    built = TopicScheme(p, device).build(topic)
    assert parse(p, built) == topic


def test_documented_topics() -> None:
    scheme = TopicScheme("edgekit", "cam-1")
    assert scheme.health == "edgekit/cam-1/health"
    assert scheme.state_reported == "edgekit/cam-1/state/reported"
    assert scheme.state_desired == "edgekit/cam-1/state/desired"
    assert scheme.status == "edgekit/cam-1/status"
    assert scheme.command_response("ping") == "edgekit/cam-1/commands/ping/response"
    assert scheme.infer_response("mlp") == "edgekit/cam-1/infer/mlp/response"
    assert scheme.subscriptions() == [
        "edgekit/cam-1/state/desired",
        "edgekit/cam-1/commands/+",
        "edgekit/cam-1/infer/+",
    ]
    assert fleet_filter("edgekit", Kind.HEALTH) == "edgekit/+/health"


@pytest.mark.parametrize(
    "topic",
    ["other/cam/health", "edgekit/cam", "edgekit/cam/unknown", "edgekit//health", "edgekit/cam/commands/a/b"],
)
def test_foreign_topics_do_not_parse(topic: str) -> None:
    assert parse("edgekit", topic) is None


@pytest.mark.parametrize("device", ["", "a/b", "a+", "#"])
def test_device_ids_that_cannot_be_a_level_are_refused(device: str) -> None:
    with pytest.raises(HubError, match="device id"):
        TopicScheme("edgekit", device)


def test_responses_do_not_match_the_request_subscriptions() -> None:
    # `commands/+` must not deliver our own `commands/<name>/response` back to us.
    scheme = TopicScheme("edgekit", "d")
    response = scheme.command_response("ping")
    assert response.count("/") == 4
    assert all(not _matches(f, response) for f in scheme.subscriptions())


def _matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    return len(p) == len(t) and all(a in ("+", b) for a, b in zip(p, t, strict=True))
