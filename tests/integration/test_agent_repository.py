"""The ModelHost implementation with real ONNX Runtime sessions, in process: swap, rollback, reload."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from device_agent.config import ModelConfig
from device_agent.errors import DesiredStateError, ModelLoadError, ModelNotFoundError
from device_agent.metrics import MetricsRegistry
from device_agent.repository import ModelRepository
from tests import onnx_models

REQUEST = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}
)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "v1": onnx_models.save(onnx_models.mlp(seed=0), tmp_path / "v1.onnx"),
        "v2": onnx_models.save(onnx_models.mlp(seed=1), tmp_path / "v2.onnx"),
        "bad": onnx_models.save(b"garbage", tmp_path / "bad.onnx"),
    }


def test_apply_swap_rollback_reload(files: dict[str, Path], tmp_path: Path) -> None:
    async def main() -> None:
        with ThreadPoolExecutor(2) as pool:
            repo = ModelRepository(pool, MetricsRegistry(), tmp_path)
            v1 = ModelConfig(name="mlp", version="1", path=str(files["v1"]))
            v2 = ModelConfig(name="mlp", version="2", path=str(files["v2"]))
            served = await repo.apply_models([v1])
            assert [(s.name, s.version, s.ready) for s in served] == [("mlp", "1", True)]
            first = json.loads(await repo.infer_json("mlp", None, REQUEST.encode()))
            assert first["model_version"] == "1"

            await repo.apply_models([v2])
            assert json.loads(await repo.infer_json("mlp", None, REQUEST.encode()))["model_version"] == "2"
            with pytest.raises(ModelNotFoundError):
                await repo.infer_json("mlp", "1", REQUEST.encode())

            broken = ModelConfig(name="mlp", version="3", path=str(files["bad"]))
            with pytest.raises(ModelLoadError, match="cannot load"):
                await repo.apply_models([broken])
            assert [s.version for s in repo.served_models()] == ["2"]  # unchanged after a failure

            await repo.rollback()
            again = json.loads(await repo.infer_json("mlp", None, REQUEST.encode()))
            assert again["outputs"] == first["outputs"]
            with pytest.raises(DesiredStateError):
                await repo.rollback()

            before = repo.served_models()[0].loaded_at
            await asyncio.sleep(0.01)
            reloaded = await repo.reload()
            assert reloaded[0].loaded_at > before
            stats = {(s.name, s.version): s for s in repo.stats()}
            assert stats[("mlp", "1")].requests >= 2
            await repo.close()

    asyncio.run(main())


def test_url_models_are_downloaded_and_verified(files: dict[str, Path], tmp_path: Path) -> None:
    from device_agent.engine import file_sha256

    async def main() -> None:
        with ThreadPoolExecutor(2) as pool:
            repo = ModelRepository(pool, MetricsRegistry(), tmp_path / "data")
            url = files["v1"].as_uri()
            good = ModelConfig(name="mlp", url=url, sha256=file_sha256(files["v1"]))
            served = await repo.apply_models([good])
            assert served[0].sha256 == good.sha256
            assert (tmp_path / "data" / "models" / "mlp" / "1" / "model.onnx").is_file()
            wrong = ModelConfig(name="other", url=url, sha256="0" * 64)
            with pytest.raises(ModelLoadError, match="expected 0000"):
                await repo.apply_models([good, wrong])
            unpinned = ModelConfig(name="other", url=url)
            with pytest.raises(ModelLoadError, match="needs a sha256"):
                await repo.apply_models([unpinned])
            await repo.close()

    asyncio.run(main())
