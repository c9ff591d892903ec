"""The real `edge-agent run` process with a real Mosquitto: hot swap under load, failed desired
states that leave the old model serving, and a broker outage with the agent SIGKILLed meanwhile."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import onnx_models
from tests.agent_process import AgentProcess, start_agent
from tests.brokers import Broker, TcpProxy, start_mosquitto
from tests.file_server import serve_folder
from tests.mqtt_consumer import Consumer

pytestmark = pytest.mark.mqtt
DEVICE = "dev-a"
P = f"edgekit/{DEVICE}"


def _agent(model: Path, url: str, data_dir: Path, interval: float = 0.1) -> AgentProcess:
    return start_agent(
        [
            "--model",
            str(model),
            "--name",
            "mlp",
            "--mqtt",
            url,
            "--device-id",
            DEVICE,
            "--health-interval",
            str(interval),
            "--data-dir",
            str(data_dir),
        ]
    )


class Load:
    """Threads posting v2 inference requests as fast as they can, counting failures."""

    def __init__(self, url: str, threads: int = 3) -> None:
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
        self._request = json.dumps(body).encode()
        self._url = f"{url}/v2/models/mlp/infer"
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(
                self._url, self._request, {"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.versions.add(json.loads(response.read()).get("model_version"))
                    self.ok += 1
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def _edgekit_states(consumer: Consumer) -> list[dict[str, Any]]:
    return [m.json().get("edgekit", {}) for m in consumer.on(f"{P}/state/reported")]


def _wait_status(consumer: Consumer, revision: int, timeout: float = 20) -> dict[str, Any]:
    def done(_: Any) -> bool:
        return any(
            s.get("revision") == revision and s.get("status") not in (None, "applying")
            for s in _edgekit_states(consumer)
        )

    consumer.wait_for(done, timeout)
    return [s for s in _edgekit_states(consumer) if s.get("revision") == revision][-1]


def test_hot_swap_under_load_and_failed_updates_keep_the_old_model(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    v1 = onnx_models.save(onnx_models.mlp(seed=1), tmp_path / "v1.onnx")
    files = {
        "v2.onnx": onnx_models.mlp(seed=2),
        "garbage.onnx": b"this is not an onnx model",
        "narrow.onnx": onnx_models.mlp(inputs=32, seed=3),
    }
    sha = {}
    for name, data in files.items():
        (served / name).write_bytes(data)
        sha[name] = hashlib.sha256(data).hexdigest()

    def desired(revision: int, version: str, file: str, digest: str) -> dict[str, Any]:
        model = {"name": "mlp", "version": version, "url": f"{base}/{file}", "sha256": digest}
        return {"edgekit": {"revision": revision, "models": [model]}}

    with start_mosquitto(tmp_path / "broker") as broker, serve_folder(served) as base:
        consumer = Consumer(broker, [f"{P}/#"])
        with _agent(v1, broker.url, tmp_path / "data") as agent:
            consumer.wait_for(lambda ms: consumer.on(f"{P}/health") != [])
            load = Load(agent.url)
            time.sleep(0.3)
            started = time.monotonic()
            consumer.publish(f"{P}/state/desired", desired(1, "2", "v2.onnx", sha["v2.onnx"]), retain=True)
            applied = _wait_status(consumer, 1)
            swap_s = time.monotonic() - started
            assert applied["status"] == "applied", applied
            assert [m["version"] for m in applied["models"]] == ["2"]
            time.sleep(0.3)
            for revision, file, digest, reason in (
                (2, "v2.onnx", "0" * 64, "sha256"),
                (3, "garbage.onnx", sha["garbage.onnx"], "mlp"),
                # Refused before the switch, so the load never meets the narrow model.
                (4, "narrow.onnx", sha["narrow.onnx"], "incompatible inputs"),
            ):
                consumer.publish(f"{P}/state/desired", desired(revision, "3", file, digest), retain=True)
                failed = _wait_status(consumer, revision)
                assert failed["status"] == "failed" and reason in failed["error"], failed
                assert [m["version"] for m in failed["models"]] == ["2"]
            load.stop()
            assert load.ok > 50 and load.failures == [], load.failures[:3]
            assert load.versions == {"1", "2"}
            with urllib.request.urlopen(f"{agent.url}/v2/models/mlp/ready", timeout=5) as response:
                assert response.status == 200
        consumer.close()
    print(f"swap latency (desired published -> applied reported): {swap_s * 1000:.0f} ms")


def test_outage_with_agent_killed_meanwhile_loses_no_report(tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.mlp(), tmp_path / "m.onnx")
    data = tmp_path / "data"
    with start_mosquitto(tmp_path / "broker") as broker:
        consumer = Consumer(broker, [f"{P}/health"], client_id="seq-checker", persistent=True)
        proxy = TcpProxy(broker.host, broker.port)
        agent = _agent(model, proxy.url, data, interval=0.05)
        try:
            consumer.wait_for(lambda ms: len(ms) >= 3)
            _outage_starts(proxy, consumer, broker)
            time.sleep(0.8)
            agent.process.kill()  # SIGKILL: no goodbye, whatever is in flight is in the outbox only
            agent.wait(10)
            agent = _agent(model, proxy.url, data, interval=0.05)
            time.sleep(0.8)
            broker.start()
            consumer.resume()
            proxy.restore()
            time.sleep(0.5)
        finally:
            agent.stop()
            proxy.close()
        last = _outbox_last_seq(data)
        consumer.wait_for(lambda ms: max(m.json()["seq"] for m in ms) >= last, timeout=20)
        seqs = [m.json()["seq"] for m in consumer.messages]
        assert list(dict.fromkeys(seqs)) == list(range(1, last + 1)), seqs
        consumer.close()


def _outage_starts(proxy: TcpProxy, consumer: Consumer, broker: Broker) -> None:
    # Cut the agent off first, so the broker is never stopped mid-way through one of its messages.
    proxy.cut()
    consumer.pause()
    broker.stop()


def _outbox_last_seq(data_dir: Path) -> int:
    from device_agent.outbox import Outbox

    box = Outbox(data_dir / "outbox.sqlite")
    try:
        return box.last_seq("health")
    finally:
        box.close()


def _pairs_model(works_for_odd: bool) -> bytes:
    """`x: FP32[n]` -> `y: FP32[2, m]`, the same signature both ways. The good version stacks x
    twice; the bad one reshapes x itself, which ONNX Runtime fails at run time for an odd n."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Reshape", ["xx" if works_for_odd else "x", "shape"], ["y"])]
    if works_for_odd:
        nodes.insert(0, helper.make_node("Concat", ["x", "x"], ["xx"], axis=0))
    graph = helper.make_graph(
        nodes,
        "pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "m"])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [2, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _post(url: str, n: int) -> tuple[int, dict[str, Any]]:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [n], "data": [1.0] * n}]}
    request = urllib.request.Request(
        f"{url}/v2/models/pairs/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_new_version_that_fails_is_rolled_back_automatically(tmp_path: Path) -> None:
    import yaml

    served = tmp_path / "served"
    served.mkdir()
    good = onnx_models.save(_pairs_model(works_for_odd=True), tmp_path / "pairs-1.onnx")
    bad = _pairs_model(works_for_odd=False)
    (served / "pairs-2.onnx").write_bytes(bad)
    with start_mosquitto(tmp_path / "broker") as broker, serve_folder(served) as base:
        config = {
            "device_id": DEVICE,
            "data_dir": str(tmp_path / "data"),
            "models": [{"name": "pairs", "version": "1", "path": str(good), "warmup": False}],
            "hub": {"transport": "mqtt", "mqtt": {"url": broker.url}},
            "health": {"interval_s": 0.2},
            "rollback": {
                "enabled": True,
                "error_rate_threshold": 0.5,
                "watch_window_s": 20,
                "min_requests": 5,
            },
        }
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
        consumer = Consumer(broker, [f"{P}/#"])
        with start_agent(["--config", str(tmp_path / "agent.yaml")]) as agent:
            assert _post(agent.url, 3)[0] == 200
            model = {
                "name": "pairs",
                "version": "2",
                "url": f"{base}/pairs-2.onnx",
                "sha256": hashlib.sha256(bad).hexdigest(),
                "warmup": False,
            }
            consumer.publish(
                f"{P}/state/desired", {"edgekit": {"revision": 1, "models": [model]}}, retain=True
            )
            assert _wait_status(consumer, 1)["status"] == "applied"
            # Version 2 answers even inputs and fails odd ones: 6 of 8 requests fail (75 % > 50 %).
            codes = [_post(agent.url, n)[0] for n in (3, 5, 4, 7, 9, 6, 11, 13)]
            assert codes.count(500) == 6 and codes.count(200) == 2, codes

            def rolled_back(_: Any) -> bool:
                return any(s.get("status") == "rolled_back" for s in _edgekit_states(consumer))

            consumer.wait_for(rolled_back, timeout=20)
            report = next(s for s in _edgekit_states(consumer) if s.get("status") == "rolled_back")
            assert "pairs version 2 failed 75% of requests" in report["error"], report
            assert [m["version"] for m in report["models"]] == ["1"]
            status, answer = _post(agent.url, 3)
            assert status == 200 and answer["model_version"] == "1"
        consumer.close()


def test_api_keys_from_the_hub_take_effect_at_once(tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    infer = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}

    def status(url: str, key: str | None) -> int:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        request = urllib.request.Request(f"{url}/v2/models/mlp/infer", json.dumps(infer).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with start_mosquitto(tmp_path / "broker") as broker:
        consumer = Consumer(broker, [f"{P}/#"])
        with _agent(model, broker.url, tmp_path / "data") as agent:
            assert status(agent.url, None) == 200  # started without keys
            settings = {"server": {"api_keys": ["k-1", "k-2"]}}
            consumer.publish(
                f"{P}/state/desired", {"edgekit": {"revision": 1, "settings": settings}}, retain=True
            )
            assert _wait_status(consumer, 1)["status"] == "applied"
            assert [status(agent.url, k) for k in (None, "wrong", "k-1", "k-2")] == [401, 401, 200, 200]
            consumer.publish(
                f"{P}/state/desired",
                {"edgekit": {"revision": 2, "settings": {"server": {"api_keys": []}}}},
                retain=True,
            )
            assert _wait_status(consumer, 2)["status"] == "applied"
            assert status(agent.url, None) == 200
        consumer.close()
