"""The hub side over plain MQTT against real Mosquitto brokers (plain, TLS + passwords)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.config import ModelConfig
from tests import tls
from tests.brokers import Broker, TcpProxy, start_mosquitto
from tests.fake_host import FakeHost
from tests.hub_session import SessionThread, hub_config
from tests.mqtt_consumer import Consumer

pytestmark = pytest.mark.mqtt
P = "edgekit/dev-1"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tls.TestCA:
    return tls.make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with start_mosquitto(tmp_path / "broker") as b:
        yield b


def _seqs(consumer: Consumer) -> list[int]:
    return [m.json()["seq"] for m in consumer.on(f"{P}/health")]


def test_health_state_commands_and_inference_over_plain_mqtt(tmp_path: Path, broker: Broker) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"ok")
    consumer = Consumer(broker, [f"{P}/#"])
    # A retained desired state waiting before the agent connects (as `edgekit deploy` leaves it).
    desired = {"edgekit": {"revision": 3, "models": [{"name": "m", "version": "1", "path": str(model)}]}}
    consumer.publish(f"{P}/state/desired", desired, retain=True)
    session = SessionThread(hub_config(str(tmp_path / "data"), url=broker.url), FakeHost())
    try:
        consumer.wait_for(lambda ms: len(_seqs(consumer)) >= 3)
        assert _seqs(consumer)[:3] == [1, 2, 3]
        report = consumer.on(f"{P}/health")[0].json()
        assert report["device_id"] == "dev-1" and report["status"] in ("healthy", "degraded")
        assert consumer.on(f"{P}/status")[0].json() == {"online": True}

        def applied(ms: list) -> bool:
            states = [m.json() for m in ms if m.topic == f"{P}/state/reported"]
            return any(s.get("edgekit", {}).get("status") == "applied" for s in states)

        consumer.wait_for(applied)
        state = [m.json() for m in consumer.on(f"{P}/state/reported")][-1]
        assert state["edgekit"]["revision"] == 3 and state["edgekit"]["models"][0]["name"] == "m"
        consumer.wait_for(
            lambda ms: "health" in [m.json() for m in ms if m.topic == f"{P}/state/reported"][-1]
        )

        consumer.publish(f"{P}/commands/ping", {"id": "c1", "payload": {}})
        consumer.publish(f"{P}/commands/fly", {"id": "c2"})
        consumer.publish(f"{P}/commands/get_models", {"id": "c3", "reply_to": "replies/here"})
        consumer.publish(f"{P}/commands/ping", b"not json")
        consumer.wait_for(lambda ms: len(consumer.on(f"{P}/commands/ping/response")) >= 2)
        consumer.wait_for(lambda ms: consumer.on(f"{P}/commands/fly/response") != [])
        pings = [m.json() for m in consumer.on(f"{P}/commands/ping/response")]
        assert {"id": "c1", "status": 200}.items() <= pings[0].items() or pings[1]["id"] == "c1"
        assert sorted(p["status"] for p in pings) == [200, 400]
        fly = consumer.on(f"{P}/commands/fly/response")[0].json()
        assert fly["id"] == "c2" and fly["status"] == 404
        # The reply_to topic was not subscribed by the consumer: check with a second client.
        replies = Consumer(broker, ["replies/#"], client_id="replies")
        consumer.publish(f"{P}/commands/get_models", {"id": "c4", "reply_to": "replies/here"})
        replies.wait_for(lambda ms: len(ms) >= 1)
        assert replies.messages[0].json()["payload"]["models"][0]["version"] == "1"
        replies.close()

        consumer.publish(f"{P}/infer/m", {"id": "r1", "inputs": [], "reply_to": f"{P}/infer-replies"})
        consumer.publish(f"{P}/infer/nope", {"inputs": []})
        consumer.wait_for(
            lambda ms: consumer.on(f"{P}/infer-replies") and consumer.on(f"{P}/infer/nope/response")
        )
        assert consumer.on(f"{P}/infer-replies")[0].json() == {
            "model_name": "m",
            "model_version": "1",
            "outputs": [],
            "id": "r1",
        }
        assert "nope" in consumer.on(f"{P}/infer/nope/response")[0].json()["error"]
    finally:
        session.stop()
    consumer.wait_for(lambda ms: consumer.on(f"{P}/status")[-1].json() == {"online": False})
    consumer.close()


def test_tls_with_passwords_and_mqtt5_request_response(tmp_path: Path, ca: tls.TestCA) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"ok")
    users = {"agent": "s3cret", "ops": "ops-pass"}
    with start_mosquitto(tmp_path / "broker", tls=ca, users=users) as broker:
        consumer = Consumer(broker, [f"{P}/#", "ops/#"], mqtt5=True, username="ops", password="ops-pass")
        config = hub_config(
            str(tmp_path / "data"),
            url=broker.url,
            username="agent",
            password_env="TEST_AGENT_MQTT_PASSWORD",
            ca_file=str(ca.ca_file),
            protocol="5",
        )
        os.environ["TEST_AGENT_MQTT_PASSWORD"] = "s3cret"
        host = FakeHost()
        session = SessionThread(config, host)
        try:
            session.call(lambda: host.apply_models([ModelConfig("m", "1", path=str(model))]))
            consumer.wait_for(lambda ms: len(_seqs(consumer)) >= 2)
            consumer.publish(
                f"{P}/infer/m",
                {"id": "x", "inputs": []},
                response_topic="ops/answers",
                correlation=b"\x01corr",
            )
            consumer.publish(f"{P}/commands/ping", {"id": "p"}, response_topic="ops/pong", correlation=b"c2")
            consumer.wait_for(lambda ms: consumer.on("ops/answers") and consumer.on("ops/pong"))
            answer = consumer.on("ops/answers")[0]
            assert answer.correlation == b"\x01corr" and answer.json()["id"] == "x"
            assert consumer.on("ops/pong")[0].correlation == b"c2"
        finally:
            session.stop()
            del os.environ["TEST_AGENT_MQTT_PASSWORD"]
            consumer.close()


def test_broker_outage_loses_nothing_and_keeps_order(tmp_path: Path, broker: Broker) -> None:
    consumer = Consumer(broker, [f"{P}/health"], client_id="seq-checker", persistent=True)
    # The agent reaches the broker through a relay: the outage starts by cutting the agent off, so
    # the broker is never shut down with one of the agent's messages half processed (Mosquitto
    # can ack a message during its shutdown and then not persist it: the broker's loss, not ours).
    proxy = TcpProxy(broker.host, broker.port)
    config = hub_config(str(tmp_path / "data"), url=proxy.url, interval_s=0.05, reconnect_max_delay_s=0.5)
    session = SessionThread(config, FakeHost())
    try:
        consumer.wait_for(lambda ms: len(ms) >= 3)
        proxy.cut()
        consumer.pause()
        broker.stop()
        time.sleep(1.5)  # ~30 reports queue up in the outbox meanwhile
        assert session.session is not None
        queued = session.call(lambda: session.session.outbox.depth)
        assert queued >= 10
        broker.start()
        consumer.resume()
        proxy.restore()
        time.sleep(0.5)
    finally:
        session.stop()
        proxy.close()
    outbox_last = hub_last_seq(tmp_path / "data")
    consumer.wait_for(lambda ms: max(m.json()["seq"] for m in ms) >= outbox_last, timeout=15)
    seqs = _seqs(consumer)
    first_seen = list(dict.fromkeys(seqs))  # duplicates are allowed (at least once); gaps are not
    assert first_seen == list(range(1, outbox_last + 1)), seqs
    consumer.close()


def hub_last_seq(data_dir: Path) -> int:
    from device_agent.outbox import Outbox

    box = Outbox(data_dir / "outbox.sqlite")
    try:
        return box.last_seq("health")
    finally:
        box.close()


def test_x509_client_certificates_with_the_real_agent(tmp_path: Path, ca: tls.TestCA) -> None:
    import yaml

    from tests import onnx_models
    from tests.agent_process import start_agent

    model = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    agent_cert, ops_cert = ca.client_cert("dev-1"), ca.client_cert("ops")
    with start_mosquitto(tmp_path / "broker", tls=ca, client_certs=True) as broker:
        consumer = Consumer(broker, [f"{P}/health"], client_cert=(ops_cert.cert_file, ops_cert.key_file))

        def agent_config(name: str, **mqtt: str) -> Path:
            config = {
                "device_id": "dev-1",
                "data_dir": str(tmp_path / name),
                "models": [{"name": "mlp", "path": str(model)}],
                "health": {"interval_s": 0.2},
                "hub": {"transport": "mqtt", "mqtt": {"url": broker.url, "ca_file": str(ca.ca_file), **mqtt}},
            }
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            return path

        # Without a certificate the broker refuses the agent: it keeps serving and reports nothing.
        with start_agent(["--config", str(agent_config("no-cert"))]) as agent:
            time.sleep(1.0)
            assert agent.process.poll() is None and _seqs(consumer) == []
        with_cert = agent_config(
            "cert", cert_file=str(agent_cert.cert_file), key_file=str(agent_cert.key_file)
        )
        with start_agent(["--config", str(with_cert)]):
            consumer.wait_for(lambda ms: len(_seqs(consumer)) >= 2)
        assert _seqs(consumer)[:2] == [1, 2]
        consumer.close()
