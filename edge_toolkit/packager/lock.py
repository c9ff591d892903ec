"""Pinned wheel sets, so a module folder builds the same image tomorrow as today.

The requirements a module declares are ranges (``onnxruntime>=1.17``). The first offline build of
a platform resolves them and writes ``requirements/<part>.<platform>.lock`` beside them: one
``name==version`` line per wheel, under a header naming the requirement lines it was resolved
from. Later builds install exactly those versions; a lock whose source lines changed (a new
scoring requirement, a newer edgekit) is stale and resolved again. Commit the module folder with
its locks to keep builds reproducible; delete a lock to take newer versions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

_SOURCE = "# source sha256: "
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-")


def lock_path(module_path: Path, part: str, platform: str) -> Path:
    return module_path / "requirements" / f"{part}.{platform}.lock"


def source_digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_lock(path: Path, source: Sequence[str]) -> list[str] | None:
    """The pinned lines, or None when there is no lock or it was made from other requirements."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if f"{_SOURCE}{source_digest(source)}" not in lines:
        return None
    return [line for line in lines if line.strip() and not line.startswith("#")]


def write_lock(path: Path, source: Sequence[str], wheels: Iterable[Path], platform: str) -> list[str]:
    pins = sorted({pin_of(wheel) for wheel in wheels}, key=str.lower)
    header = [
        f"# Pinned by edgekit at the first offline build for {platform}; delete this file to re-resolve.",
        f"{_SOURCE}{source_digest(source)}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".lock.partial")
    tmp.write_text("\n".join([*header, *pins]) + "\n", encoding="utf-8")
    tmp.replace(path)
    return pins


def pin_of(wheel: Path) -> str:
    """``name==version`` from a wheel's file name (names are normalised the way pip writes them)."""
    match = _WHEEL_NAME.match(wheel.name)
    if match is None:
        raise ValueError(f"{wheel.name} is not a wheel file name")
    return f"{match['name'].replace('_', '-')}=={match['version']}"
