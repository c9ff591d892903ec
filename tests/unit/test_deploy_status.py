"""Pure parts of deploy: judging $edgeAgent reports, picking the MQTT desired state, URLs."""

from __future__ import annotations

import pytest

from edge_toolkit.deploy import mqtt
from edge_toolkit.deploy.iothub import parse_connection_string
from edge_toolkit.deploy.status import AgentReport, assess, expected_modules
from edge_toolkit.errors import DeployError

MANIFEST = {
    "modulesContent": {
        "$edgeAgent": {
            "properties.desired": {
                "systemModules": {"edgeAgent": {}, "edgeHub": {}},
                "modules": {"a": {"status": "running"}, "b": {"status": "stopped"}},
            }
        },
        "a": {"properties.desired": {"edgekit": {"revision": 3}}},
        "b": {"properties.desired": {"other": 1}},
    }
}
EXPECTED = expected_modules(MANIFEST)


def _report(version: int | None, code: int | None = 200, **modules: str) -> AgentReport:
    return AgentReport.from_reported(
        {
            "lastDesiredVersion": version,
            "lastDesiredStatus": {"code": code, "description": "bad schema"},
            "systemModules": {
                "edgeAgent": {"runtimeStatus": "running"},
                "edgeHub": {"runtimeStatus": "running"},
            },
            "modules": {name: {"runtimeStatus": status, "exitCode": 1} for name, status in modules.items()},
        }
    )


def test_expected_modules() -> None:
    assert EXPECTED == {"edgeAgent": "running", "edgeHub": "running", "a": "running", "b": "stopped"}


def test_assess_states() -> None:
    assert assess(_report(None), EXPECTED, 5).state == "pending"
    assert "not acted on desired version 5 yet (at 4)" in assess(_report(4), EXPECTED, 5).reason
    refused = assess(_report(5, code=412), EXPECTED, 5)
    assert (refused.state, refused.reason) == (
        "failed",
        "the IoT Edge agent refused the deployment (412): bad schema",
    )
    waiting = assess(_report(5, a="backoff"), EXPECTED, 5)
    assert (waiting.state, waiting.reason) == ("pending", "a: backoff (want running); b: not reported yet")
    assert assess(_report(5, a="failed", b="stopped"), EXPECTED, 5).reason == "module a failed, exit code 1"
    assert assess(_report(6, a="running", b="stopped"), EXPECTED, 5).state == "succeeded"


def test_desired_state_selection() -> None:
    assert mqtt.desired_state(MANIFEST) == {"edgekit": {"revision": 3}}
    assert mqtt.desired_state(MANIFEST, "a") == {"edgekit": {"revision": 3}}
    with pytest.raises(DeployError, match="module 'b' has no edgekit desired properties"):
        mqtt.desired_state(MANIFEST, "b")
    two = {"modulesContent": {m: {"properties.desired": {"edgekit": {}}} for m in ("x", "y")}}
    with pytest.raises(DeployError, match=r"2 module twins .* \(x, y\); choose one with --module"):
        mqtt.desired_state(two)


def test_broker_urls_and_topics() -> None:
    address = mqtt.parse_url("mqtts://us%40r:p%3Ass@broker.local")
    assert (address.host, address.port, address.tls, address.username, address.password) == (
        "broker.local",
        8883,
        True,
        "us@r",
        "p:ss",
    )
    assert address.display == "mqtts://broker.local:8883"
    assert mqtt.parse_url("mqtt://h").port == 1883
    with pytest.raises(DeployError, match="not a broker URL"):
        mqtt.parse_url("http://h")
    with pytest.raises(DeployError, match="not a usable device id"):
        mqtt.desired_topic("a/b")


def test_connection_string_parts() -> None:
    parts = parse_connection_string("HostName=h.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=k==")
    assert parts == {"HostName": "h.azure-devices.net", "SharedAccessKeyName": "p", "SharedAccessKey": "k=="}
    with pytest.raises(DeployError, match="malformed part"):
        parse_connection_string("HostName=h;junk")
