"""The install extras keep the device side lean: `edge-toolkit[agent]` pulls no workspace-side
dependency, and the console scripts point at the right sides."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_ONLY = {"docker", "azure-iot-hub", "onnx", "click", "rich", "jsonschema", "uamqp"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_device_install_carries_no_workspace_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    device = _names(project["dependencies"]) | _names(project["optional-dependencies"]["agent"])
    assert not device & WORKSPACE_ONLY, device & WORKSPACE_ONLY
    assert {"onnxruntime", "paho-mqtt", "psutil"} <= device


def test_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"edgekit": "edge_toolkit.cli.main:main", "edge-agent": "device_agent.cli:main"}


def test_module_templates_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "module_templates*" in config["packages"]["find"]["include"]
    assert config["package-data"]["module_templates"] == ["**/*"]
