"""Wheel locks: pins from wheel file names, stale locks, and locks kept across a re-package."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_toolkit.packager.lock import lock_path, pin_of, read_lock, write_lock
from edge_toolkit.packager.plan import PlannedModel, make_plan
from edge_toolkit.packager.writer import write_module
from tests.unit.test_packager_plan import options

WHEELS = [
    Path("numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"),
    Path("paho_mqtt-1.6.1-py3-none-any.whl"),
    Path("PyYAML-6.0.4-cp311-cp311-manylinux2014_x86_64.whl"),
]


def test_pins_come_from_wheel_names() -> None:
    assert [pin_of(w) for w in WHEELS] == ["numpy==2.4.6", "paho-mqtt==1.6.1", "PyYAML==6.0.4"]
    with pytest.raises(ValueError, match="not a wheel"):
        pin_of(Path("README.md"))


def test_a_lock_serves_only_the_requirements_it_was_made_from(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "agent", "amd64")
    source = ["numpy>=1.26", "paho-mqtt<2,>=1.6.1", "PyYAML>=6"]
    assert read_lock(path, source) is None  # none yet
    pins = write_lock(path, source, WHEELS, "amd64")
    assert read_lock(path, source) == pins == ["numpy==2.4.6", "paho-mqtt==1.6.1", "PyYAML==6.0.4"]
    assert read_lock(path, [*source, "six"]) is None  # other requirements: stale, resolve again
    assert path.name == "agent.amd64.lock" and path.read_text().startswith("# Pinned by edgekit")


def test_a_re_package_keeps_the_locks(tmp_path: Path) -> None:
    model_file = tmp_path / "m.onnx"
    model_file.write_bytes(b"model bytes")
    sha = hashlib.sha256(b"model bytes").hexdigest()
    planned = PlannedModel(name="mlp", version=1, sha256=sha, size=11)
    plan = make_plan(options(models=(planned,)))
    folder = write_module(plan, tmp_path / "mlp", {("mlp", 1): model_file})
    write_lock(lock_path(folder, "agent", "amd64"), ["numpy>=1.26"], WHEELS[:1], "amd64")
    write_module(plan, folder, {("mlp", 1): model_file})
    assert read_lock(lock_path(folder, "agent", "amd64"), ["numpy>=1.26"]) == ["numpy==2.4.6"]
