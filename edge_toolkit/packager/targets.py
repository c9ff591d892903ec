"""Packaging targets, read from ``module_templates/<target>/target.yaml``.

A target is data: base image, ONNX Runtime package, execution-provider order, device mounts,
environment. Adding a target means adding a folder, not a Python branch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from edge_toolkit.errors import PackagingError

# Platforms in the IoT Edge tooling's naming, with the Docker platform and the newest wheel tag
# the images' glibc accepts (Debian bookworm and python:3.11-slim have glibc 2.36).
PLATFORMS: dict[str, tuple[str, str]] = {
    "amd64": ("linux/amd64", "manylinux_2_28_x86_64"),
    "arm64v8": ("linux/arm64", "manylinux_2_28_aarch64"),
}


def wheel_platform_tags(platform: str) -> list[str]:
    """Every manylinux tag up to the platform's newest, newest first.

    ``pip download --platform`` does not widen a PEP 600 tag to older glibc versions, and many
    packages (orjson, httptools) publish only ``manylinux_2_17`` / ``manylinux2014`` wheels.
    """
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", PLATFORMS[platform][1])
    assert match is not None, "PLATFORMS holds PEP 600 tags"
    minor, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += [f"manylinux_2_{m}_{arch}" for m in (12, 5)] + [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


# Platforms people ask for that cannot work, with the reason.
REFUSED_PLATFORMS: dict[str, str] = {
    "arm32v7": "ONNX Runtime publishes no wheels for 32-bit ARM (armv7l); use a 64-bit OS (arm64v8)",
    "windows-amd64": "module images are Linux images; IoT Edge for Linux on Windows runs them as amd64",
}
_FIELDS = {
    "description",
    "base_image",
    "python_version",
    "runtime_package",
    "providers",
    "platforms",
    "devices",
    "env",
    "device_requests",
}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    base_image: str
    python_version: str
    runtime_package: str | None  # None: the base image brings its own ONNX Runtime
    providers: tuple[str, ...]
    platforms: tuple[str, ...]
    devices: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    device_requests: tuple[dict[str, Any], ...] = ()


def target_names() -> list[str]:
    root = resources.files("module_templates")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.joinpath("target.yaml").is_file())


def load_target(name: str) -> Target:
    names = target_names()
    if name not in names:
        raise PackagingError(f"unknown target {name!r}; choose one of {', '.join(names)}")
    source = resources.files("module_templates").joinpath(name, "target.yaml")
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PackagingError(f"module_templates/{name}/target.yaml is not valid YAML: {exc}") from exc
    return parse_target(name, data)


def parse_target(name: str, data: Any) -> Target:
    where = f"module_templates/{name}/target.yaml"
    if not isinstance(data, dict):
        raise PackagingError(f"{where}: expected a mapping")
    unknown = sorted(set(data) - _FIELDS)
    missing = sorted({"base_image", "providers", "platforms", "python_version"} - set(data))
    if unknown or missing:
        raise PackagingError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    platforms = tuple(str(p) for p in data["platforms"])
    for platform in platforms:
        if platform not in PLATFORMS:
            raise PackagingError(f"{where}: platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    providers = tuple(str(p) for p in data["providers"])
    if not providers or providers[-1] != "CPUExecutionProvider":
        raise PackagingError(f"{where}: providers must end with CPUExecutionProvider")
    if not re.fullmatch(r"3\.\d+", str(data["python_version"])):
        raise PackagingError(f"{where}: python_version must look like 3.11")
    runtime = data.get("runtime_package")
    return Target(
        name=name,
        description=str(data.get("description", "")),
        base_image=str(data["base_image"]),
        python_version=str(data["python_version"]),
        runtime_package=None if runtime is None else str(runtime),
        providers=providers,
        platforms=platforms,
        devices=tuple(str(d) for d in data.get("devices") or ()),
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        device_requests=tuple(dict(r) for r in data.get("device_requests") or ()),
    )


def check_platforms(target: Target, platforms: list[str]) -> tuple[str, ...]:
    """The requested platforms, each supported by ``target``; refused ones name the reason."""
    if not platforms:
        raise PackagingError("give at least one platform (e.g. --platform amd64)")
    for platform in platforms:
        if platform in REFUSED_PLATFORMS:
            raise PackagingError(f"platform {platform} is not supported: {REFUSED_PLATFORMS[platform]}")
        if platform not in PLATFORMS:
            raise PackagingError(f"unknown platform {platform!r}; choose from {', '.join(PLATFORMS)}")
        if platform not in target.platforms:
            raise PackagingError(
                f"target {target.name} has no {platform} build ({target.runtime_package} publishes "
                f"wheels for {', '.join(target.platforms)} only)"
            )
    return tuple(dict.fromkeys(platforms))


def template_text(name: str) -> str:
    """A shared template file from ``module_templates/common/``."""
    return resources.files("module_templates").joinpath("common", name).read_text(encoding="utf-8")
