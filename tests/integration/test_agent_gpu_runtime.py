"""The agent under the GPU build of ONNX Runtime (`onnxruntime-gpu`), as the cuda/tensorrt module
images carry it, on a machine without a GPU: the runtime offers CUDA and TensorRT, cannot start
them, and the agent must serve on CPU and say so instead of pretending to run on the GPU.

The device environment is `.venv-ort-gpu` (made by `scripts/bootstrap.sh --gpu-runtime`, which
`scripts/test.sh` runs): the `[agent]` extra with `onnxruntime` swapped for `onnxruntime-gpu`.
Where a GPU with its libraries is present, the same test checks that CUDA is really used.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
import yaml

from tests import onnx_models
from tests.agent_process import start_agent

ROOT = Path(__file__).resolve().parents[2]
GPU_PYTHON = ROOT / ".venv-ort-gpu" / "bin" / "python"
ASKED = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def gpu_python() -> str:
    if not GPU_PYTHON.exists():
        pytest.fail(f"{GPU_PYTHON} is missing: run 'bash scripts/bootstrap.sh --gpu-runtime'")
    probe = subprocess.run(
        [
            str(GPU_PYTHON),
            "-c",
            "import json, importlib.metadata as m, onnxruntime as o; "
            "print(json.dumps([m.version('onnxruntime-gpu'), o.get_available_providers()]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    version, offered = json.loads(probe.stdout)
    assert version and "CUDAExecutionProvider" in offered, f"not the GPU build of ONNX Runtime: {offered}"
    return str(GPU_PYTHON)


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists()


def test_gpu_runtime_without_a_gpu_falls_back_to_cpu_and_reports_it(gpu_python: str, tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "models": [{"name": "mlp", "version": "1", "path": str(model), "providers": ASKED}],
            }
        )
    )
    with start_agent(["--config", str(config)], python=gpu_python, timeout=60) as agent:
        meta = requests.get(f"{agent.url}/v2/models/mlp", timeout=5).json()["parameters"]
        if _has_gpu():
            assert "CUDAExecutionProvider" in meta["providers"]
        else:
            assert meta["providers"] == ["CPUExecutionProvider"]
            # Offered by the runtime, so not "missing" in the install sense: unusable here.
            assert set(meta["missing_providers"]) == {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
            warnings = [e for e in agent.logs() if e.get("unusable")]
            assert warnings, agent.log_text()
            assert warnings[0]["active"] == ["CPUExecutionProvider"]

        x = np.random.default_rng(3).standard_normal((4, 64), dtype=np.float32)
        reply = requests.post(
            f"{agent.url}/v2/models/mlp/infer",
            json={
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [4, 64], "data": x.ravel().tolist()}
                ]
            },
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        out = reply.json()["outputs"][0]
        expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]
        np.testing.assert_allclose(
            np.asarray(out["data"], np.float32).reshape(out["shape"]), expected, atol=1e-4
        )
