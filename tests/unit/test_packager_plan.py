"""The packager's pure parts: targets as data, the plan and its rendered files (golden files),
requirements per target, credentials, names. No Docker, no network.

Regenerate the golden files after an intended change with EDGEKIT_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from device_agent.config import parse_config
from edge_toolkit.errors import DockerError, PackagingError
from edge_toolkit.packager.credentials import find_credentials, read_dotenv
from edge_toolkit.packager.module import ModuleFolder
from edge_toolkit.packager.plan import (
    PackageOptions,
    PlannedModel,
    Resources,
    make_plan,
    parse_memory,
    render_template,
)
from edge_toolkit.packager.push import registry_repository
from edge_toolkit.packager.requirements import agent_requirements
from edge_toolkit.packager.targets import check_platforms, load_target, target_names, wheel_platform_tags

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "packager"
SHA = "ab" * 32
DECLARED = [
    "numpy>=1.26",
    "PyYAML>=6",
    'onnxruntime>=1.17; extra == "agent"',
    'uvloop>=0.19; sys_platform != "win32" and extra == "agent"',
    'paho-mqtt<2,>=1.6.1; extra == "agent"',
    'docker>=7; extra == "workspace"',
    'pytest>=8; extra == "dev"',
]


def options(**changes: object) -> PackageOptions:
    target = load_target(str(changes.pop("target", "cpu")))
    values: dict[str, object] = {
        "module_name": "mlp",
        "target": target,
        "platforms": ("amd64", "arm64v8") if "arm64v8" in target.platforms else ("amd64",),
        "models": (PlannedModel("mlp", 3, SHA, 1234),),
        "agent_requirements": agent_requirements(target, DECLARED),
        "resources": Resources(cpus=1.5, memory_bytes=parse_memory("512m"), devices=("/dev/video0",)),
        "edgekit_version": "0.1.0",
    }
    values.update(changes)
    return PackageOptions(**values)  # type: ignore[arg-type]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("EDGEKIT_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with EDGEKIT_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), (
        f"{name} differs from its golden file (EDGEKIT_UPDATE_GOLDEN=1 updates it)"
    )


@pytest.mark.parametrize(
    "name",
    ["module.json", "Dockerfile.amd64", "module.deployment.json", "agent.yaml", "requirements/agent.txt"],
)
def test_cpu_plan_matches_golden_files(name: str) -> None:
    plan = make_plan(options())
    check_golden(f"cpu/{name.replace('/', '_')}", plan.files[name])


def test_cuda_plan_matches_golden_files() -> None:
    plan = make_plan(options(target="cuda", resources=Resources()))
    check_golden("cuda/Dockerfile.amd64", plan.files["Dockerfile.amd64"])
    check_golden("cuda/module.deployment.json", plan.files["module.deployment.json"])


def test_module_json_is_the_iotedgedev_layout() -> None:
    module = json.loads(make_plan(options()).files["module.json"])
    # The iotedgedev keys, plus our own `edgekit` interface (extra keys are ignored by the tooling).
    assert set(module) == {"$schema-version", "description", "image", "language", "edgekit"}
    assert module["edgekit"] == {"inputs": ["infer"], "outputs": ["health", "inferResult"]}
    assert module["$schema-version"] == "0.0.1" and module["language"] == "python"
    assert module["image"] == {
        "repository": "localhost:5000/mlp",
        "tag": {
            "version": "0.0.1",
            "platforms": {"amd64": "./Dockerfile.amd64", "arm64v8": "./Dockerfile.arm64v8"},
        },
        "buildOptions": [],
        "contextPath": "./",
    }


def test_agent_config_is_valid_and_uses_the_target_provider_order() -> None:
    plan = make_plan(options(target="tensorrt", resources=Resources()))
    config = parse_config(yaml.safe_load(plan.files["agent.yaml"]))
    assert config.models[0].providers == (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    assert config.models[0].path == "models/mlp/3/model.onnx" and config.models[0].sha256 == SHA
    assert config.server.port == 5001


def test_dockerfile_orders_layers_and_puts_the_model_last() -> None:
    dockerfile = make_plan(options()).files["Dockerfile.amd64"]
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and line[0].isupper()]
    copies = [line for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies[-1] == "COPY models/ /app/models/" and copies[-2] == "COPY agent.yaml /app/agent.yaml"
    assert instructions[-1] == "LABEL" and "USER" in instructions and "HEALTHCHECK" in instructions
    assert "--mount" not in dockerfile and "# syntax" not in dockerfile  # the classic builder


def test_every_target_loads_and_ends_with_cpu() -> None:
    assert target_names() == ["cpu", "cuda", "openvino", "tensorrt", "vitisai"]
    for name in target_names():
        target = load_target(name)
        assert target.providers[-1] == "CPUExecutionProvider"
        make_plan(options(target=name, resources=Resources()))


def test_requirements_follow_the_target_runtime() -> None:
    cpu = agent_requirements(load_target("cpu"), DECLARED)
    assert cpu == (
        "numpy>=1.26",
        "PyYAML>=6",
        "onnxruntime>=1.17",
        'uvloop>=0.19; sys_platform != "win32"',
        "paho-mqtt<2,>=1.6.1",
    )
    gpu = agent_requirements(load_target("cuda"), DECLARED)
    # The GPU targets pin their own range, matched to the CUDA of their base image.
    assert "onnxruntime-gpu>=1.19,<1.27" in gpu and "onnxruntime>=1.17" not in gpu
    assert not any("onnxruntime" in line for line in agent_requirements(load_target("vitisai"), DECLARED))
    assert not any(line.startswith(("docker", "pytest")) for line in cpu)


def test_arm32_is_refused_with_the_reason() -> None:
    with pytest.raises(PackagingError, match="no wheels for 32-bit ARM"):
        check_platforms(load_target("cpu"), ["arm32v7"])
    with pytest.raises(PackagingError, match="amd64 only"):
        check_platforms(load_target("cuda"), ["arm64v8"])


def test_bad_options_are_refused_before_anything_is_written() -> None:
    with pytest.raises(PackagingError, match="not usable as an image name"):
        make_plan(options(module_name="My Model"))
    with pytest.raises(PackagingError, match="listed twice"):
        make_plan(options(models=(PlannedModel("a", 1, SHA, 1), PlannedModel("a", 2, SHA, 1))))
    with pytest.raises(PackagingError, match="nested files"):
        make_plan(options(user_requirements=("-r other.txt",)))
    with pytest.raises(PackagingError, match="under /dev"):
        make_plan(options(resources=Resources(devices=("video0",))))
    with pytest.raises(PackagingError, match="not a size"):
        parse_memory("lots")
    assert parse_memory("1.5g") == 1536 * 1024**2


def test_template_placeholders_must_all_be_known() -> None:
    assert render_template("a {{x}} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(PackagingError, match="unknown placeholders: y"):
        render_template("{{x}}{{y}}", {"x": "1"})


def test_wheel_tags_cover_older_manylinux_releases() -> None:
    tags = wheel_platform_tags("amd64")
    assert (
        tags[0] == "manylinux_2_28_x86_64"
        and "manylinux_2_17_x86_64" in tags
        and "manylinux2014_x86_64" in tags
    )
    assert all(tag.endswith("_aarch64") for tag in wheel_platform_tags("arm64v8"))


def test_credentials_come_from_env_over_dotenv_and_never_show(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        '# registry\nexport CONTAINER_REGISTRY_USERNAME=bob\nCONTAINER_REGISTRY_PASSWORD="s3cret"\n'
    )
    assert read_dotenv(dotenv)["CONTAINER_REGISTRY_PASSWORD"] == "s3cret"
    found = find_credentials("reg.example:5000", environ={}, dotenv=dotenv)
    assert found is not None and found.auth_config() == {"username": "bob", "password": "s3cret"}
    assert "s3cret" not in repr(found)
    env = {"CONTAINER_REGISTRY_PASSWORD": "other"}
    assert find_credentials("r", environ=env, dotenv=dotenv).password == "other"  # type: ignore[union-attr]
    assert find_credentials("r", environ={}, dotenv=tmp_path / "none") is None
    with pytest.raises(DockerError, match="CONTAINER_REGISTRY_PASSWORD") as caught:
        find_credentials("r", environ={"CONTAINER_REGISTRY_USERNAME": "bob"}, dotenv=tmp_path / "none")
    assert "bob" not in str(caught.value)
    (tmp_path / "bad.env").write_text("TOKEN-without-equals-s3cret\n")
    with pytest.raises(DockerError, match=r"bad.env:1 is not KEY=VALUE") as bad:
        read_dotenv(tmp_path / "bad.env")
    assert "s3cret" not in str(bad.value)


def test_push_moves_the_repository_to_the_registry(tmp_path: Path) -> None:
    module = ModuleFolder(tmp_path, "mlp", "cpu", "3.11", "localhost:5000/team/mlp", "1.2.3", {}, ())
    assert registry_repository(module, "127.0.0.1:5555") == "127.0.0.1:5555/team/mlp"
    plain = ModuleFolder(tmp_path, "mlp", "cpu", "3.11", "mlp", "1.2.3", {}, ())
    assert registry_repository(plain, "myacr.azurecr.io") == "myacr.azurecr.io/mlp"
    assert module.image_name("amd64") == "localhost:5000/team/mlp:1.2.3-amd64"
    with pytest.raises(DockerError, match="HOST or HOST:PORT"):
        registry_repository(module, "https://x/")
