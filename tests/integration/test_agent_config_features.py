"""The real agent started from an agent.yaml: auth, dynamic batching, body limit, runtime failures,
and an Azure ML score.py run unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import yaml
from onnx import TensorProto, helper

from tests import onnx_models
from tests.agent_process import AgentProcess, start_agent

KEY = "s3cret-key"
ENV_KEY = "another-key-from-env"

SCORE_PY = """
import json
import os

import numpy as np
import onnxruntime

session = None


def init():
    global session
    path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "mlp.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    if data.shape[-1] != 64:
        raise ValueError("expected 64 features")
    result = session.run(None, {"input": data})[0]
    return {"predictions": result.tolist(), "model_dir": os.environ["AZUREML_MODEL_DIR"]}
"""


def reshape_model() -> bytes:
    """`x: FP32[n]` reshaped to [2, -1]: ONNX Runtime fails at run time when n is odd."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, -1])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "m"])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("agent-config")
    models = folder / "models"
    onnx_models.save(onnx_models.mlp(), models / "mlp.onnx")
    onnx_models.save(onnx_models.fixed_batch_last(), models / "lastdim.onnx")
    onnx_models.save(reshape_model(), models / "reshape.onnx")
    (folder / "score.py").write_text(SCORE_PY)
    config = {
        "version": 1,
        "data_dir": str(folder / "data"),
        "server": {"api_keys": [KEY], "api_key_env": "BENCH_AGENT_KEY", "max_body_bytes": 64 * 1024},
        "models": [
            {
                "name": "mlp",
                "path": "models/mlp.onnx",
                "providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                "session": {"intra_op_threads": 1, "graph_optimization": "extended"},
                "batching": {"enabled": True, "max_batch_size": 16, "max_queue_delay_ms": 20},
            },
            {"name": "lastdim", "path": "models/lastdim.onnx", "batching": {"enabled": True}},
            {"name": "reshape", "path": "models/reshape.onnx", "warmup": False},
        ],
        "scoring": {"script": "score.py", "model_dir": "models"},
    }
    (folder / "agent.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def agent(workdir: Path) -> Iterator[AgentProcess]:
    with start_agent(["--config", str(workdir / "agent.yaml")], env={"BENCH_AGENT_KEY": ENV_KEY}) as process:
        yield process


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mlp_body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]
    }


def test_health_is_open_but_everything_else_needs_a_key(agent: AgentProcess) -> None:
    assert requests.get(f"{agent.url}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{agent.url}/v2/health/ready", timeout=5).status_code == 200
    x = np.zeros((1, 64), dtype=np.float32)
    for path, method in (
        ("/v2", "GET"),
        ("/v2/models/mlp", "GET"),
        ("/v2/models/mlp/infer", "POST"),
        ("/score", "POST"),
        ("/metrics", "GET"),
    ):
        for headers in ({}, auth("wrong"), {"Authorization": KEY}):
            response = requests.request(
                method, f"{agent.url}{path}", json=mlp_body(x), headers=headers, timeout=5
            )
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{agent.url}/v2/models/mlp", headers=auth(), timeout=5).status_code == 200
    assert requests.get(f"{agent.url}/v2/models/mlp", headers=auth(ENV_KEY), timeout=5).status_code == 200


def test_missing_providers_are_reported_and_cpu_serves(agent: AgentProcess) -> None:
    meta = requests.get(f"{agent.url}/v2/models/mlp", headers=auth(), timeout=5).json()
    assert meta["parameters"]["providers"] == ["CPUExecutionProvider"]
    assert meta["parameters"]["missing_providers"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    warnings = [e for e in agent.logs() if e.get("missing")]
    assert len(warnings) == 1  # reported once
    assert warnings[0]["missing"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_dynamic_batching_gives_each_request_its_exact_rows(agent: AgentProcess, workdir: Path) -> None:
    meta = requests.get(f"{agent.url}/v2/models/mlp", headers=auth(), timeout=5).json()
    assert meta["parameters"]["dynamic_batching"] is True
    session = ort.InferenceSession(str(workdir / "models" / "mlp.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(24)]

    def call(x: np.ndarray) -> np.ndarray:
        response = requests.post(
            f"{agent.url}/v2/models/mlp/infer", json=mlp_body(x), headers=auth(), timeout=10
        )
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        return np.array(output["data"], dtype=np.float32).reshape(output["shape"])

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, inputs))
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got, session.run(None, {"input": x})[0])
    metrics = requests.get(f"{agent.url}/metrics", headers=auth(), timeout=5).text
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    labels = 'model="mlp",version="1"'
    batches = int(samples[f"edge_agent_batch_size_count{{{labels}}}"])
    rows = float(samples[f"edge_agent_batch_size_sum{{{labels}}}"])
    assert rows == sum(x.shape[0] for x in inputs)
    assert batches < len(inputs)  # some requests really shared a run


def test_model_without_leading_batch_dim_is_served_unbatched(agent: AgentProcess) -> None:
    meta = requests.get(f"{agent.url}/v2/models/lastdim", headers=auth(), timeout=5).json()
    assert meta["parameters"]["dynamic_batching"] is False
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 2], "data": list(range(8))}]}
    answer = requests.post(
        f"{agent.url}/v2/models/lastdim/infer", json=body, headers=auth(), timeout=5
    ).json()
    assert answer["outputs"][0]["data"] == [-float(v) for v in range(8)]


def test_runtime_failure_is_an_error_with_the_runtime_message(agent: AgentProcess) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}
    response = requests.post(f"{agent.url}/v2/models/reshape/infer", json=body, headers=auth(), timeout=5)
    assert response.status_code in (400, 500)
    assert "ONNX Runtime" in response.json()["error"]
    assert "reshape" in response.json()["error"].lower()
    ok = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
    response = requests.post(f"{agent.url}/v2/models/reshape/infer", json=ok, headers=auth(), timeout=5)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["shape"] == [2, 2]


def test_body_over_the_limit_is_413(agent: AgentProcess) -> None:
    x = np.ones((400, 64), dtype=np.float32)  # ~130 KB of JSON, over the 64 KiB limit
    response = requests.post(f"{agent.url}/v2/models/mlp/infer", json=mlp_body(x), headers=auth(), timeout=10)
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"inputs": ['
        for _ in range(100):
            yield b" " * 1024
        yield b"]}"

    response = requests.post(f"{agent.url}/v2/models/mlp/infer", data=chunks(), headers=auth(), timeout=10)
    assert response.status_code == 413
    small = np.zeros((1, 64), dtype=np.float32)
    response = requests.post(
        f"{agent.url}/v2/models/mlp/infer", json=mlp_body(small), headers=auth(), timeout=10
    )
    assert response.status_code == 200


def test_aml_score_py_runs_unchanged(agent: AgentProcess, workdir: Path) -> None:
    x = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    response = requests.post(
        f"{agent.url}/score", data=json.dumps({"data": x.tolist()}), headers=auth(), timeout=10
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_dir"] == str(workdir / "models")
    session = ort.InferenceSession(str(workdir / "models" / "mlp.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(
        np.array(answer["predictions"], dtype=np.float32), session.run(None, {"input": x})[0]
    )


def test_score_py_exception_is_500_and_agent_stays_up(agent: AgentProcess) -> None:
    response = requests.post(
        f"{agent.url}/score", data=json.dumps({"data": [[1, 2]]}), headers=auth(), timeout=10
    )
    assert response.status_code == 500
    assert "expected 64 features" in response.json()["error"]
    response = requests.post(f"{agent.url}/score", data=b"\xff\xfe", headers=auth(), timeout=10)
    assert response.status_code == 400
    x = np.zeros((1, 64), dtype=np.float32)
    response = requests.post(
        f"{agent.url}/score", data=json.dumps({"data": x.tolist()}), headers=auth(), timeout=10
    )
    assert response.status_code == 200
