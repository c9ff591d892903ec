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
