"""The packager against a real Docker engine and registry (started by tests/integration/conftest.py).

register → package → build offline on the local Debian base → push → pull → run → infer over
HTTP and compare with in-process ONNX Runtime; an Azure ML score.py; a model-only rebuild that
reuses every earlier layer; failing builds; a missing engine. Each test removes its containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_toolkit.errors import BuildError, DockerUnavailableError
from edge_toolkit.images import ImageCatalog
from edge_toolkit.packager.build import build_module
from edge_toolkit.packager.docker_client import DockerEngine
from edge_toolkit.packager.module import ModuleFolder
from edge_toolkit.workspace import Workspace
from tests import onnx_models
from tests.docker_infra import Registry, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EDGEKIT = [sys.executable, "-m", "edge_toolkit.cli.main"]


def edgekit(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_HOME"}
    full_env.update(env)
    return subprocess.run(
        [*EDGEKIT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok_json(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    result = edgekit(*args, "--json", cwd=cwd, env=env)
    assert result.returncode == 0, f"edgekit {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with mlp:1 registered (shared by the tests of this file)."""
    root = tmp_path_factory.mktemp("project")
    onnx_models.save(onnx_models.mlp(seed=0), root / "mlp.onnx")
    Workspace.create(root / ".edgekit").registry.register(root / "mlp.onnx", name="mlp")
    return root


@pytest.fixture
def engine(docker_env: dict[str, str]) -> Iterator[DockerEngine]:
    with DockerEngine() as client:
        yield client


class Container:
    """A module container on the host network at a free port; removed on exit."""

    def __init__(self, engine: DockerEngine, image: str) -> None:
        self.engine = engine
        self.port = free_port()
        self.id = engine.run(image, environment={"EDGE_AGENT_PORT": str(self.port)})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout_s: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            state = self.engine.container_state(self.id)
            if not state.get("Running"):
                pytest.fail(f"the container exited ({state.get('ExitCode')}):\n{self.engine.logs(self.id)}")
            try:
                with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        pytest.fail(f"the agent was not ready within {timeout_s} s:\n{self.engine.logs(self.id)}")

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url(path), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def remove(self) -> None:
        self.engine.remove_container(self.id)


def infer_and_compare(container: Container, model_file: Path) -> None:
    import onnxruntime as ort

    batch = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    answer = container.post(
        "/v2/models/mlp/infer",
        {"inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "data": batch.ravel().tolist()}]},
    )
    output = answer["outputs"][0]
    assert output["name"] == "output" and output["shape"] == [3, 10]
    expected = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).run(
        None, {"input": batch}
    )[0]
    np.testing.assert_allclose(
        np.asarray(output["data"], dtype=np.float32).reshape(3, 10), expected, rtol=1e-5
    )


def test_end_to_end_package_build_push_pull_run_infer(
    project: Path, docker_env: dict[str, str], engine: DockerEngine, oci_registry: Registry
) -> None:
    started = time.monotonic()
    packaged = ok_json(
        "package", "mlp", "--target", "cpu", "--platform", "amd64", "--cpus", "1", cwd=project, env=docker_env
    )
    module_dir = Path(packaged["path"])
    assert json.loads((module_dir / "module.json").read_text())["image"]["tag"]["platforms"] == {
        "amd64": "./Dockerfile.amd64"
    }
    # --offline: the build runs with network "none", so it passing proves nothing was fetched.
    built = ok_json(
        "build",
        str(module_dir),
        "--platform",
        "amd64",
        "--offline",
        "--base-image",
        "debian-local",
        cwd=project,
        env=docker_env,
    )
    assert built["image"] == "localhost:5000/mlp:0.0.1-amd64" and built["architecture"] == "amd64"
    # The first offline build pinned what it resolved; the image carries exactly those versions.
    lock = (module_dir / "requirements" / "agent.amd64.lock").read_text().splitlines()
    pinned = next(line for line in lock if line.startswith("onnxruntime=="))
    inside = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python3",
         built["image"], "-c", "import onnxruntime; print(onnxruntime.__version__)"],
        env={**os.environ, **docker_env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert inside.returncode == 0 and pinned == f"onnxruntime=={inside.stdout.strip()}", inside
    details = engine.inspect_image(built["image"])
    config = details["Config"]
    assert config["User"] == "10001:10001"
    assert (
        config["Healthcheck"]["Test"][0] == "CMD" and "/v2/health/ready" in config["Healthcheck"]["Test"][-1]
    )
    assert (
        config["Labels"]["io.edgekit.model.sha256"]
        == Workspace.open(project / ".edgekit").registry.get("mlp:1").sha256
    )
    assert config["Labels"]["org.opencontainers.image.title"] == "mlp"
    assert "5001/tcp" in config["ExposedPorts"]

    pushed = ok_json("push", str(module_dir), "--registry", oci_registry.address, cwd=project, env=docker_env)
    reference = f"{oci_registry.address}/mlp:0.0.1-amd64"
    assert pushed["image"] == reference and pushed["repo_digest"].startswith(
        f"{oci_registry.address}/mlp@sha256:"
    )

    # Pull it back from the registry into a clean engine state, then run what was pulled.
    engine.remove_image(reference)
    engine.remove_image(built["image"])
    for chunk in engine.pull(f"{oci_registry.address}/mlp", "0.0.1-amd64"):
        assert "error" not in chunk, chunk
    pulled = engine.inspect_image(reference)
    assert f"{oci_registry.address}/mlp@{pushed['repo_digest'].split('@')[1]}" in pulled["RepoDigests"]

    container = Container(engine, reference)
    try:
        ready_s = container.wait_ready()
        infer_and_compare(container, project / "mlp.onnx")
    finally:
        container.remove()
        engine.remove_image(reference)
    images = ok_json("images", cwd=project, env=docker_env)
    assert images[0]["repo_digest"] == pushed["repo_digest"] and images[0]["models"] == ["mlp:1"]
    print(f"\ne2e: {time.monotonic() - started:.1f} s (build {built['seconds']} s, ready in {ready_s:.1f} s)")


def test_model_only_rebuild_reuses_every_earlier_layer(project: Path, engine: DockerEngine) -> None:
    workspace = Workspace.open(project / ".edgekit")
    onnx_models.save(onnx_models.mlp(seed=1), project / "mlp-v2.onnx")
    v2 = workspace.registry.register(project / "mlp-v2.onnx", name="mlp")
    # Both folders are written back to back, so they carry the same agent code.
    old = _package(project, "mlp:1", project / "rebuild-v1")
    new = _package(project, f"mlp:{v2.version}", project / "rebuild-v2")
    first = build_module(old, "amd64", engine, base_image="debian-local", offline=True)
    second = build_module(new, "amd64", engine, base_image="debian-local", offline=True)
    try:
        # Every step up to the config is reused; only the config, the model and its labels run.
        assert _uncached_steps(second.log) == [
            "COPY agent.yaml /app/agent.yaml",
            "COPY models/ /app/models/",
            "LABEL",
        ], second.log
        assert second.log.count("---> Using cache") == second.cached_steps >= 15
        assert second.image_id != first.image_id
        labels = engine.inspect_image(second.image)["Config"]["Labels"]
        assert labels["io.edgekit.model.version"] == str(v2.version)
        assert labels["io.edgekit.model.sha256"] == v2.sha256
        print(
            f"\nmodel-only rebuild: {second.seconds:.1f} s, {second.cached_steps}/{second.steps} steps cached"
        )
    finally:
        engine.remove_image(second.image)


def _package(project: Path, ref: str, output: Path) -> ModuleFolder:
    result = edgekit("package", ref, "--module-name", "rebuild", "-o", str(output), cwd=project, env={})
    assert result.returncode == 0, result.stderr
    return ModuleFolder.load(output)


def _uncached_steps(log: str) -> list[str]:
    """The instructions of steps that ran (no "Using cache" after them), FROM lines excluded."""
    steps: list[tuple[str, bool]] = []
    for line in log.splitlines():
        if line.startswith("Step "):
            steps.append((line.split(" : ", 1)[1], False))
        elif line.strip() == "---> Using cache" and steps:
            steps[-1] = (steps[-1][0], True)
    ran = [text for text, cached in steps if not cached and not text.startswith(("FROM ", "ARG "))]
    return ["LABEL" if text.startswith("LABEL ") else text for text in ran]


SCORE_PY = """
import json
import os

import numpy as np
import onnxruntime
import six  # from the requirements file: proves user requirements are installed offline

session = None


def init():
    global session
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run(raw_data):
    data = np.asarray(json.loads(raw_data)["data"], dtype=np.float32)
    scores = session.run(None, {"input": data})[0]
    return {"argmax": scores.argmax(axis=1).tolist(), "six": six.PY3}
"""


def test_azure_ml_score_script_answers_on_score(
    project: Path, docker_env: dict[str, str], engine: DockerEngine
) -> None:
    (project / "score.py").write_text(SCORE_PY)
    (project / "score-requirements.txt").write_text("six\n")
    packaged = ok_json(
        "package",
        "mlp:1",
        "--module-name",
        "aml",
        "--score-script",
        "score.py",
        "--requirements",
        "score-requirements.txt",
        cwd=project,
        env=docker_env,
    )
    built = ok_json(
        "build", packaged["path"], "--offline", "--base-image", "debian-local", cwd=project, env=docker_env
    )
    container = Container(engine, built["image"])
    try:
        container.wait_ready()
        batch = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
        answer = container.post("/score", {"data": batch.tolist()})
        import onnxruntime as ort

        expected = (
            ort.InferenceSession(str(project / "mlp.onnx")).run(None, {"input": batch})[0].argmax(axis=1)
        )
        assert answer == {"argmax": expected.tolist(), "six": True}
    finally:
        container.remove()
        engine.remove_image(built["image"])


def test_broken_requirement_fails_with_log_and_records_nothing(
    project: Path, docker_env: dict[str, str]
) -> None:
    (project / "broken.txt").write_text("edgekit-no-such-package-4f2a==1.0\n")
    packaged = ok_json(
        "package",
        "mlp:1",
        "--module-name",
        "broken",
        "--requirements",
        "broken.txt",
        cwd=project,
        env=docker_env,
    )
    before = ok_json("images", cwd=project, env=docker_env)
    log_file = project / "broken-build.log"
    result = edgekit(
        "build", packaged["path"], "--offline", "--log-file", str(log_file), cwd=project, env=docker_env
    )
    assert result.returncode == 7, result.stderr
    assert "edgekit-no-such-package-4f2a" in result.stderr
    assert "No matching distribution found for edgekit-no-such-package-4f2a" in log_file.read_text()
    assert ok_json("images", cwd=project, env=docker_env) == before


def test_engine_error_chunk_becomes_build_error(project: Path, engine: DockerEngine) -> None:
    result = edgekit("package", "mlp:1", "--module-name", "nobase", cwd=project, env={})
    assert result.returncode == 0, result.stderr
    module = ModuleFolder.load(project / "modules" / "nobase")
    with pytest.raises(BuildError) as caught:
        # No engine here can pull: the FROM fails inside the engine and arrives as an error chunk.
        build_module(module, "amd64", engine, base_image="edgekit-tests/no-such-base:0", network_mode="none")
    log = caught.value.log.splitlines()
    # The log runs up to the failing FROM, then the engine's own message (pull refused or the
    # registry unreachable, depending on the machine), which the exception repeats.
    assert log[1].startswith("Step 2/") and log[1].endswith(": FROM ${BASE_IMAGE} AS deps"), log
    assert log[-1] and log[-1] in str(caught.value)
    assert ImageCatalog(Workspace.open(project / ".edgekit")).latest("nobase", "amd64") is None


def test_missing_engine_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(DockerUnavailableError, match="DOCKER_HOST"):
        DockerEngine(base_url=missing)
    packaged = ok_json("package", "mlp:1", "--module-name", "no-engine", cwd=project, env={})
    result = edgekit("build", packaged["path"], cwd=project, env={"DOCKER_HOST": missing})
    assert result.returncode == 7
    assert "no Docker engine answers at" in result.stderr and "Traceback" not in result.stderr


def test_cuda_target_builds_and_falls_back_to_cpu_without_a_gpu(
    project: Path, docker_env: dict[str, str], engine: DockerEngine
) -> None:
    """The cuda image (onnxruntime-gpu inside) on the local Debian base, run where no GPU is:
    the agent serves on CPU and reports CUDA as missing instead of claiming it."""
    packaged = ok_json(
        "package", "mlp:1", "--target", "cuda", "--module-name", "gpu", cwd=project, env=docker_env
    )
    agent_yaml = (Path(packaged["path"]) / "agent.yaml").read_text()
    assert "CUDAExecutionProvider" in agent_yaml
    built = ok_json(
        "build", packaged["path"], "--offline", "--base-image", "debian-local", cwd=project, env=docker_env
    )
    container = Container(engine, built["image"])
    try:
        container.wait_ready(timeout_s=120)
        with urllib.request.urlopen(container.url("/v2/models/mlp"), timeout=10) as response:
            parameters = json.loads(response.read())["parameters"]
        assert parameters["providers"] == ["CPUExecutionProvider"], parameters
        assert parameters["missing_providers"] == ["CUDAExecutionProvider"], parameters
        infer_and_compare(container, project / "mlp.onnx")
    finally:
        container.remove()
        engine.remove_image(built["image"])


def test_base_image_without_the_targets_python_is_a_clear_build_error(
    project: Path, docker_env: dict[str, str], engine: DockerEngine, tmp_path: Path
) -> None:
    from edge_toolkit.packager.base_image import ensure_base_image

    base = ensure_base_image(engine).image
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN rm -f /usr/bin/python3 /usr/bin/python3.*\n")
    made = subprocess.run(
        ["docker", "build", "-q", "--network", "none", "-t", "edgekit-tests/no-python:1", str(tmp_path)],
        env={**os.environ, **docker_env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    result = edgekit("package", "mlp:1", "--module-name", "nopython", cwd=project, env={})
    assert result.returncode == 0, result.stderr
    module = ModuleFolder.load(project / "modules" / "nopython")
    try:
        with pytest.raises(
            BuildError, match=r"no python3 3\.11, which target cpu needs; build with --base-image"
        ):
            build_module(module, "amd64", engine, base_image="edgekit-tests/no-python:1", offline=True)
        assert ImageCatalog(Workspace.open(project / ".edgekit")).latest("nopython", "amd64") is None
    finally:
        engine.remove_image("edgekit-tests/no-python:1")
