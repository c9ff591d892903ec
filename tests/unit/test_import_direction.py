"""The device side never imports the workspace side, nor workspace-only dependencies:
a device image carries only `device_agent` and its `[agent]` extra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_ON_DEVICE = ("edge_toolkit", "onnx", "docker", "azure.iot.hub", "click", "rich", "jsonschema")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_ON_DEVICE)


def test_device_agent_sources_import_nothing_from_the_workspace_side() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "device_agent").rglob("*.py")
        for module in _imports(path)
        if _forbidden(module)
    }
    assert not offenders, "device_agent imports workspace-side modules:\n" + "\n".join(sorted(offenders))


def test_importing_every_device_module_loads_no_workspace_module() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "device_agent").rglob("*.py")
    )
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"forbidden = {FORBIDDEN_ON_DEVICE!r}\n"
        "bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "", f"device modules pulled in: {result.stdout.strip()}"
