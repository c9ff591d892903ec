"""The real agent process over HTTP: v2 JSON and binary, tritonclient, /score, metrics, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from tests import onnx_models
from tests.agent_process import AgentProcess, start_agent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("agent-models")
    onnx_models.save(onnx_models.mlp(), folder / "mlp.onnx")
    onnx_models.save(onnx_models.mlp(seed=1), folder / "mlp-v2.onnx")
    onnx_models.save(onnx_models.integer_ops(), folder / "ints.onnx")
    onnx_models.save(onnx_models.odd_names(), folder / "odd.onnx")
    onnx_models.save(onnx_models.scalar_scale(), folder / "scalar.onnx")
    return folder


@pytest.fixture(scope="module")
def agent(model_dir: Path) -> Iterator[AgentProcess]:
    args = [
        "--model", str(model_dir / "mlp.onnx"), "--name", "mlp", "--version", "1",
        "--model", str(model_dir / "mlp-v2.onnx"), "--name", "mlp", "--version", "2",
        "--model", str(model_dir / "ints.onnx"), "--name", "ints", "--version", "1",
        "--model", str(model_dir / "odd.onnx"), "--name", "odd", "--version", "1",
        "--model", str(model_dir / "scalar.onnx"), "--name", "scalar", "--version", "1",
    ]  # fmt: skip
    with start_agent(args) as process:
        yield process


def reference(model_dir: Path, file: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_dir / file), providers=["CPUExecutionProvider"])
    result: list[np.ndarray] = session.run(None, feeds)
    return result


def mlp_request(rows: int = 2, seed: int = 0) -> tuple[np.ndarray, dict[str, object]]:
    x = np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 64], "data": x.ravel().tolist()}]
    }
    return x, body


def assert_still_serving(agent: AgentProcess) -> None:
    _, body = mlp_request(1)
    response = requests.post(f"{agent.url}/v2/models/mlp/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert agent.process.poll() is None


def test_health_and_server_metadata(agent: AgentProcess) -> None:
    assert requests.get(f"{agent.url}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{agent.url}/v2/health/ready", timeout=5).status_code == 200
    meta = requests.get(f"{agent.url}/v2", timeout=5).json()
    assert meta["name"] == "edge-agent"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_per_model_and_version(agent: AgentProcess) -> None:
    meta = requests.get(f"{agent.url}/v2/models/mlp", timeout=5).json()
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["parameters"]["version"] == "2"  # the highest version is the default
    assert meta["parameters"]["providers"] == ["CPUExecutionProvider"]
    v1 = requests.get(f"{agent.url}/v2/models/mlp/versions/1", timeout=5).json()
    assert v1["parameters"]["version"] == "1"
    assert requests.get(f"{agent.url}/v2/models/mlp/ready", timeout=5).status_code == 200
    assert requests.get(f"{agent.url}/v2/models/mlp/versions/2/ready", timeout=5).status_code == 200
    assert requests.get(f"{agent.url}/v2/models/mlp/versions/7/ready", timeout=5).status_code == 404
    assert requests.get(f"{agent.url}/v2/models/nope/ready", timeout=5).status_code == 404


def test_json_infer_matches_onnxruntime_per_version(agent: AgentProcess, model_dir: Path) -> None:
    x, body = mlp_request(3)
    body["id"] = "request-42"
    for version, file in (("1", "mlp.onnx"), ("2", "mlp-v2.onnx")):
        response = requests.post(f"{agent.url}/v2/models/mlp/versions/{version}/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["id"] == "request-42"
        assert answer["model_name"] == "mlp"
        assert answer["model_version"] == version
        (output,) = answer["outputs"]
        assert output["name"] == "output" and output["datatype"] == "FP32" and output["shape"] == [3, 10]
        got = np.array(output["data"], dtype=np.float32).reshape(3, 10)
        np.testing.assert_array_equal(got, reference(model_dir, file, {"input": x})[0])


def test_nested_json_data_is_accepted(agent: AgentProcess, model_dir: Path) -> None:
    x, body = mlp_request(2)
    body["inputs"][0]["data"] = x.tolist()  # type: ignore[index]
    response = requests.post(f"{agent.url}/v2/models/mlp/versions/1/infer", json=body, timeout=10)
    got = np.array(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
    np.testing.assert_array_equal(got, reference(model_dir, "mlp.onnx", {"input": x})[0])


def test_integer_and_bool_tensors(agent: AgentProcess) -> None:
    body = {
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [1, 4], "data": [1, 5, 3, 2**40]},
            {"name": "counts", "datatype": "INT32", "shape": [1, 4], "data": [2, 2, 3, 1]},
        ]
    }
    answer = requests.post(f"{agent.url}/v2/models/ints/infer", json=body, timeout=10).json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["total"]["datatype"] == "INT64"
    assert outputs["total"]["data"] == [3, 7, 6, 2**40 + 1]
    assert outputs["flag"]["datatype"] == "BOOL"
    assert outputs["flag"]["data"] == [False, True, False, True]


def test_scalar_tensors(agent: AgentProcess) -> None:
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
            {"name": "scale", "datatype": "FP32", "shape": [], "data": [2.5]},
        ]
    }
    answer = requests.post(f"{agent.url}/v2/models/scalar/infer", json=body, timeout=10).json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["y"]["data"] == [2.5, 5.0, 7.5]
    assert outputs["scale_out"]["shape"] == [] and outputs["scale_out"]["data"] == [2.5]


def test_binary_extension_raw_http(agent: AgentProcess, model_dir: Path) -> None:
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    header = json.dumps(
        {
            "id": "bin",
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [4, 64],
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = requests.post(
        f"{agent.url}/v2/models/mlp/versions/1/infer",
        data=header + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.content[:length])
    assert meta["id"] == "bin"
    (output,) = meta["outputs"]
    assert output["parameters"]["binary_data_size"] == 4 * 10 * 4
    got = np.frombuffer(response.content[length:], dtype="<f4").reshape(4, 10)
    np.testing.assert_array_equal(got, reference(model_dir, "mlp.onnx", {"input": x})[0])


def test_binary_bytes_and_fp16_tensors(agent: AgentProcess) -> None:
    half = np.array([[1.5, -2.25]], dtype=np.float16)
    pixels = np.array([[1, 2, 250, 0]], dtype=np.uint8)
    header = json.dumps(
        {
            "inputs": [
                {"name": "serving_default/input:0", "datatype": "FP16", "shape": [1, 2],
                 "parameters": {"binary_data_size": half.nbytes}},
                {"name": "pixels:0", "datatype": "UINT8", "shape": [1, 4], "data": pixels.ravel().tolist()},
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()  # fmt: skip
    response = requests.post(
        f"{agent.url}/v2/models/odd/infer",
        data=header + half.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    outputs = json.loads(response.content[:length])["outputs"]
    blob = response.content[length:]
    sizes = [o["parameters"]["binary_data_size"] for o in outputs]
    assert [o["name"] for o in outputs] == ["model/output:0", "pixels/out"]
    np.testing.assert_array_equal(np.frombuffer(blob[: sizes[0]], dtype="<f2").reshape(1, 2), half)
    np.testing.assert_array_equal(np.frombuffer(blob[sizes[0] :], dtype="u1").reshape(1, 4), pixels)


def test_requested_outputs_subset(agent: AgentProcess) -> None:
    body = {
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "counts", "datatype": "INT32", "shape": [1, 4], "data": [0, 0, 0, 9]},
        ],
        "outputs": [{"name": "flag"}],
    }
    answer = requests.post(f"{agent.url}/v2/models/ints/infer", json=body, timeout=10).json()
    assert [o["name"] for o in answer["outputs"]] == ["flag"]
    assert answer["outputs"][0]["data"] == [True, True, True, False]


def test_tritonclient_http_unchanged(agent: AgentProcess, model_dir: Path) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{agent.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("mlp", "1")
        assert client.get_model_metadata("mlp", "1")["inputs"][0]["name"] == "input"
        x = np.random.default_rng(5).standard_normal((2, 64)).astype(np.float32)
        expected = reference(model_dir, "mlp.onnx", {"input": x})[0]
        for binary in (True, False):
            tensor = httpclient.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            wanted = httpclient.InferRequestedOutput("output", binary_data=binary)
            result = client.infer("mlp", [tensor], model_version="1", outputs=[wanted], request_id="t1")
            np.testing.assert_array_equal(result.as_numpy("output"), expected)
            assert result.get_response()["id"] == "t1"
    finally:
        client.close()


def test_score_endpoint_without_script(agent: AgentProcess, model_dir: Path) -> None:
    x = np.random.default_rng(9).standard_normal((64,)).astype(np.float32)
    response = requests.post(f"{agent.url}/score", json={"data": x.tolist()}, timeout=10)
    assert response.status_code == 200, response.text
    got = np.array(response.json(), dtype=np.float32)
    # /score serves the first configured model (mlp version 1), with the batch dim added.
    np.testing.assert_array_equal(got, reference(model_dir, "mlp.onnx", {"input": x[None]})[0])


def test_metrics_count_requests_and_errors(agent: AgentProcess) -> None:
    _, body = mlp_request(1)
    requests.post(f"{agent.url}/v2/models/mlp/versions/1/infer", json=body, timeout=10)
    requests.post(f"{agent.url}/v2/models/mlp/versions/1/infer", data=b"{", timeout=10)
    text = requests.get(f"{agent.url}/metrics", timeout=5).text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    labels = 'model="mlp",version="1"'
    assert int(samples[f"edge_agent_requests_total{{{labels}}}"]) >= 1
    assert int(samples[f"edge_agent_client_errors_total{{{labels}}}"]) >= 1
    assert int(samples[f'edge_agent_request_duration_seconds_bucket{{{labels},le="+Inf"}}']) >= 1
    assert samples[f"edge_agent_model_loaded{{{labels}}}"] == "1"


def _binary_request(x: np.ndarray, declared: int, extra: bytes = b"") -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                     "parameters": {"binary_data_size": declared}}]}
    ).encode()  # fmt: skip
    return header + x.tobytes() + extra, {"Inference-Header-Content-Length": str(len(header))}


BAD_JSON_BODIES = {
    "malformed json": b'{"inputs": [',
    "not an object": b"[1, 2]",
    "no inputs": b'{"outputs": []}',
    "wrong tensor name": json.dumps(
        {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    ).encode(),
    "wrong datatype": json.dumps(
        {"inputs": [{"name": "input", "datatype": "INT32", "shape": [1, 64], "data": [0] * 64}]}
    ).encode(),
    "unknown datatype": json.dumps(
        {"inputs": [{"name": "input", "datatype": "FLOAT", "shape": [1, 64], "data": [0] * 64}]}
    ).encode(),
    "wrong shape": json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 32], "data": [0.0] * 32}]}
    ).encode(),
    "length does not match shape": json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 63}]}
    ).encode(),
    "text in a float tensor": json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": ["a", "b"]}]}
    ).encode(),
    "negative dimension": json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64], "data": [0.0] * 64}]}
    ).encode(),
    "unknown requested output": json.dumps(
        {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}],
            "outputs": [{"name": "probabilities"}],
        }
    ).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON_BODIES))
def test_bad_json_requests_get_400_and_agent_stays_up(agent: AgentProcess, case: str) -> None:
    response = requests.post(f"{agent.url}/v2/models/mlp/infer", data=BAD_JSON_BODIES[case], timeout=10)
    assert response.status_code == 400, (case, response.text)
    assert response.json()["error"]
    assert_still_serving(agent)


def test_bad_binary_sizes_get_400(agent: AgentProcess) -> None:
    x = np.zeros((1, 64), dtype=np.float32)
    for declared, extra in ((x.nbytes - 4, b""), (x.nbytes + 4, b""), (x.nbytes, b"\0" * 8)):
        body, headers = _binary_request(x, declared, extra)
        response = requests.post(f"{agent.url}/v2/models/mlp/infer", data=body, headers=headers, timeout=10)
        assert response.status_code == 400, response.text
    body, _ = _binary_request(x, x.nbytes)
    for value in ("abc", str(len(body) + 10)):
        response = requests.post(
            f"{agent.url}/v2/models/mlp/infer",
            data=body,
            headers={"Inference-Header-Content-Length": value},
            timeout=10,
        )
        assert response.status_code == 400, response.text
    assert_still_serving(agent)


def test_unknown_model_version_route_and_method(agent: AgentProcess) -> None:
    _, body = mlp_request(1)
    response = requests.post(f"{agent.url}/v2/models/nope/infer", json=body, timeout=10)
    assert response.status_code == 404 and "mlp" in response.json()["error"]
    response = requests.post(f"{agent.url}/v2/models/mlp/versions/9/infer", json=body, timeout=10)
    assert response.status_code == 404 and "1, 2" in response.json()["error"]
    assert requests.get(f"{agent.url}/v2/models/mlp/infer", timeout=10).status_code == 405
    assert requests.get(f"{agent.url}/nowhere", timeout=10).status_code == 404
    assert_still_serving(agent)


def test_empty_batch_is_served(agent: AgentProcess) -> None:
    header = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [0, 64], "data": []}]}
    ).encode()
    response = requests.post(f"{agent.url}/v2/models/mlp/infer", data=header, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [0, 10]
