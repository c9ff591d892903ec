"""The device-side requirement lines an image installs, for one target.

The source of truth is the ``agent`` extra of the installed edge-toolkit distribution (plus its
core dependencies), so the image can never drift from ``pyproject.toml``. The target decides the
ONNX Runtime package: ``onnxruntime`` is swapped for ``onnxruntime-gpu`` / ``-openvino``, or
dropped when the base image brings its own build.
"""

from __future__ import annotations

import re
from importlib import metadata

from edge_toolkit.errors import PackagingError
from edge_toolkit.packager.targets import Target

DISTRIBUTION = "edge-toolkit"
RUNTIME = "onnxruntime"
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_RE = re.compile(r"""\s*(and\s+)?extra\s*==\s*["']agent["']""")


def installed_requirements() -> list[str]:
    """Requirement strings of the installed distribution (core + every extra, with markers)."""
    try:
        return list(metadata.requires(DISTRIBUTION) or [])
    except metadata.PackageNotFoundError as exc:
        raise PackagingError(
            f"{DISTRIBUTION} is not installed as a distribution, so its [agent] dependencies are "
            "unknown; install it with pip install -e . (or pip install edge-toolkit)"
        ) from exc


def agent_requirements(target: Target, declared: list[str] | None = None) -> tuple[str, ...]:
    """The lines for ``requirements/agent.txt``: core + [agent], with the target's runtime."""
    lines: list[str] = []
    for requirement in installed_requirements() if declared is None else declared:
        spec, _, marker = requirement.partition(";")
        marker = marker.strip()
        if "extra" in marker:
            if not _EXTRA_RE.search(marker):
                continue  # another extra (workspace, dev): never in a device image
            marker = _EXTRA_RE.sub("", marker).strip()
            marker = re.sub(r"^and\s+|\s+and$", "", marker).strip()
        name_match = _NAME_RE.match(spec)
        if name_match is None:
            raise PackagingError(f"cannot read the requirement {requirement!r} of {DISTRIBUTION}")
        if _normalise(name_match.group(1)) == RUNTIME:
            if target.runtime_package is None:
                continue  # the base image brings the runtime (e.g. Vitis AI)
            runtime = _NAME_RE.match(target.runtime_package)
            if runtime is not None and target.runtime_package[runtime.end() :].strip():
                # The target pins its own range (a GPU build must match the base image's CUDA).
                spec = target.runtime_package
            else:
                spec = target.runtime_package + spec.strip()[len(name_match.group(1)) :]
        line = spec.strip() + (f"; {marker}" if marker else "")
        if line not in lines:
            lines.append(line)
    return tuple(lines)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
