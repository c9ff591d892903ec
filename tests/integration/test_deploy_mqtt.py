"""`edgekit deploy --mqtt`: the desired state lands retained on a real Mosquitto."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from edge_toolkit.cli.main import cli
from edge_toolkit.deploy import api
from edge_toolkit.deploy.history import DeploymentHistory
from edge_toolkit.errors import DeployError
from edge_toolkit.workspace import Workspace
from tests.brokers import Broker, start_mosquitto

GOLDEN = Path(__file__).parent.parent / "golden" / "manifest" / "cases"

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with start_mosquitto(tmp_path_factory.mktemp("deploy-mqtt"), users={"ops": "ops-pw"}) as running:
        yield running


def _retained(broker: Broker, topic: str, timeout: float = 5.0) -> mqtt.MQTTMessage:
    """Subscribe after the publish: only a retained message can arrive."""
    got: list[mqtt.MQTTMessage] = []
    done = threading.Event()
    client = mqtt.Client(client_id="deploy-test-reader", clean_session=True)
    client.username_pw_set("ops", "ops-pw")
    client.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)

    def on_message(c: Any, u: Any, message: mqtt.MQTTMessage) -> None:
        got.append(message)
        done.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert done.wait(timeout), f"no retained message on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def _url(broker: Broker, user: str = "ops", password: str = "ops-pw") -> str:
    return f"mqtt://{user}:{password}@{broker.host}:{broker.port}"


def test_desired_state_is_published_retained(broker: Broker, tmp_path: Path) -> None:
    manifest = json.loads((GOLDEN / "single-module" / "expected.amd64.json").read_text())
    workspace = Workspace.create(tmp_path / "ws")
    topic = api.deploy_mqtt(workspace, _url(broker), "press-7", manifest, {})
    assert topic == "edgekit/press-7/state/desired"
    message = _retained(broker, topic)
    assert message.retain and message.qos == 1
    assert json.loads(message.payload) == {
        "edgekit": manifest["modulesContent"]["edgeinference"]["properties.desired"]["edgekit"]
    }
    (record,) = DeploymentHistory(workspace).list()
    assert record.target == f"mqtt://{broker.host}:{broker.port}/press-7"  # no credentials kept


def test_secret_references_in_the_state_are_resolved(broker: Broker, tmp_path: Path) -> None:
    state = {"revision": 4, "models": [], "settings": {"server": {"api_keys": ["${AGENT_API_KEY}"]}}}
    manifest = {"modulesContent": {"edgeinference": {"properties.desired": {"edgekit": state}}}}
    workspace = Workspace.create(tmp_path / "ws")
    with pytest.raises(Exception, match=r"\$\{AGENT_API_KEY\} is not set"):
        api.deploy_mqtt(workspace, _url(broker), "press-8", manifest, {})
    api.deploy_mqtt(workspace, _url(broker), "press-8", manifest, {"AGENT_API_KEY": "k-123"})
    payload = json.loads(_retained(broker, "edgekit/press-8/state/desired").payload)
    assert payload["edgekit"]["settings"]["server"]["api_keys"] == ["k-123"]


def test_refused_credentials_and_unreachable_broker(broker: Broker, tmp_path: Path) -> None:
    manifest = json.loads((GOLDEN / "single-module" / "expected.amd64.json").read_text())
    workspace = Workspace.create(tmp_path / "ws")
    with pytest.raises(DeployError, match="refused the connection"):
        api.deploy_mqtt(workspace, _url(broker, password="wrong"), "press-9", manifest, {})
    with pytest.raises(DeployError, match=re.escape("cannot connect to mqtt://127.0.0.1:1")):
        api.deploy_mqtt(workspace, "mqtt://127.0.0.1:1", "press-9", manifest, {})
    assert DeploymentHistory(workspace).list() == []


def test_cli_deploy_mqtt(broker: Broker, tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.json"
    manifest.write_text((GOLDEN / "several-platforms" / "expected.amd64.json").read_text())
    result = CliRunner().invoke(
        cli,
        [
            "-w",
            str(tmp_path / "ws"),
            "deploy",
            str(manifest),
            "--mqtt",
            _url(broker),
            "--device",
            "press-10",
            "--prefix",
            "plant1",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["topic"] == "plant1/press-10/state/desired"
    assert json.loads(_retained(broker, "plant1/press-10/state/desired").payload)["edgekit"]["revision"] == 1
