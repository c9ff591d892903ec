"""Start-up, readiness, failures at start and SIGTERM draining of the real agent process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests import onnx_models
from tests.agent_process import launch_agent, start_agent

SLOW_SCORE_PY = """
import time


def init():
    pass


def run(raw_data):
    time.sleep(1.0)
    return {"slept": True}
"""


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_models.save(onnx_models.mlp(), tmp_path_factory.mktemp("lifecycle") / "mlp.onnx")


def test_sigterm_drains_in_flight_requests(mlp_file: Path, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text(SLOW_SCORE_PY)
    config = {
        "data_dir": str(tmp_path),
        "models": [{"name": "mlp", "path": str(mlp_file)}],
        "scoring": {"script": "score.py"},
    }
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    agent = start_agent(["--config", str(tmp_path / "agent.yaml")])
    try:
        result: dict[str, object] = {}

        def slow_call() -> None:
            response = requests.post(f"{agent.url}/score", data=b"{}", timeout=10)
            result["status"] = response.status_code
            result["body"] = response.json()

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)  # the request is inside run() now
        agent.terminate()
        caller.join(10)
        assert result == {"status": 200, "body": {"slept": True}}
        assert agent.wait(10) == 0
        messages = [entry.get("msg") for entry in agent.logs()]
        assert "signal received; draining in-flight requests" in messages
        assert messages[-1] == "stopped"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{agent.url}/v2/health/live", timeout=2)
    finally:
        agent.stop()


def test_start_to_ready_and_env_port(mlp_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with start_agent(["--model", str(mlp_file)], env={"EDGE_AGENT_PORT": str(port)}) as agent:
        elapsed = time.monotonic() - started
        assert agent.port == port
        assert requests.get(f"{agent.url}/v2/models/mlp/ready", timeout=5).status_code == 200
        ready = next(e for e in agent.logs() if e.get("msg") == "ready")
        assert ready["models"] == ["mlp:1"]
        # Generous for a shared CI machine; the benchmark reports the real figure.
        assert elapsed < 10


def test_unloadable_model_stops_the_agent_with_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not onnx")
    agent = launch_agent(["--model", str(broken)])
    code = agent.wait(30)
    assert code == 3
    failure = next(e for e in agent.logs() if e.get("msg") == "start-up failed; stopping")
    assert "ONNX Runtime cannot load" in failure["error"] and "broken.onnx" in failure["error"]


def test_sha256_mismatch_refuses_the_model(mlp_file: Path, tmp_path: Path) -> None:
    config = {
        "data_dir": str(tmp_path),
        "models": [{"name": "mlp", "path": str(mlp_file), "sha256": "0" * 64}],
    }
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    agent = launch_agent(["--config", str(tmp_path / "agent.yaml")])
    assert agent.wait(30) == 3
    assert "expected 0000" in agent.log_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "--config"),
        (["--model", "m.onnx", "--port", "70000"], "server.port"),
        (["--model", "m.onnx", "--name", "bad name"], "models[0].name"),
        (["--model", "m.onnx", "--health-interval", "0"], "health.interval_s"),
    ],
)
def test_bad_flags_exit_2_naming_the_field(args: list[str], needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert needle in done.stderr


def test_bad_config_file_exit_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump({"models": [{"name": "m", "path": "m.onnx", "batching": {"max_batch_size": 0}}]})
    )
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "models[0].batching.max_batch_size" in done.stderr


def test_help_explains_both_ways_to_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert "--config" in done.stdout and "--model" in done.stdout and "--mqtt" in done.stdout


def test_health_reports_on_stdout_without_a_hub(mlp_file: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "device_agent", "run", "--model", str(mlp_file), "--port", "0",
        "--host", "127.0.0.1", "--data-dir", str(tmp_path / "data"), "--health-interval", "0.2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    received: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            received.append(raw.decode())

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        lines = [json.loads(line) for line in received[:3]]
        assert len(lines) == 3, f"expected 3 health lines on stdout, got {received}"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert [line["kind"] for line in lines] == ["health"] * 3
    reports = [line["message"] for line in lines]
    assert [r["seq"] for r in reports] == [1, 2, 3]
    assert reports[0]["models"][0]["name"] == "mlp" and reports[0]["status"] in ("healthy", "degraded")
