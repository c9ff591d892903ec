"""`edgekit package` then `edgekit manifest gen | validate` on the sample template, through the real
CLI: the packaged module declares its IoT Edge inputs and outputs, so a route naming an output the
agent does not have is caught before anything reaches a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import onnx_models

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = "\n".join(
    [
        "CONTAINER_REGISTRY_ADDRESS=localhost:5000",
        "CONTAINER_REGISTRY_USERNAME=u",
        "CONTAINER_REGISTRY_PASSWORD=p",
    ]
)


def edgekit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "edge_toolkit.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def solution(tmp_path: Path) -> Path:
    onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    (tmp_path / ".env").write_text(ENV_FILE + "\n")
    (tmp_path / "deployment.template.json").write_text((ROOT / "deployment.template.json").read_text())
    for args in (
        ["init"],
        ["model", "register", "mlp.onnx", "--name", "mlp"],
        ["package", "mlp", "--module-name", "edgeinference", "-o", "modules/edgeinference"],
    ):
        result = edgekit(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    return tmp_path


def test_sample_template_generates_and_validates_with_the_packaged_module(solution: Path) -> None:
    result = edgekit("manifest", "gen", "deployment.template.json", "--json", cwd=solution)
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)["manifest"]
    result = edgekit("manifest", "validate", written, cwd=solution)
    assert result.returncode == 0, result.stderr


def test_a_route_from_an_output_the_module_lacks_is_refused(solution: Path) -> None:
    template = solution / "deployment.template.json"
    template.write_text(template.read_text().replace("outputs/inferResult", "outputs/nosuch"))
    result = edgekit("manifest", "gen", "deployment.template.json", cwd=solution)
    assert result.returncode != 0
    assert "has no output 'nosuch' (it has: health, inferResult)" in result.stderr, result.stderr
    assert not (solution / "config").exists()  # nothing written
