"""Offline wheels: every device-side dependency downloaded for the image's platform.

``pip download --only-binary=:all: --platform manylinux_2_28_<arch> --python-version 3.11
--implementation cp`` resolves for the device, not for this machine (plain ``manylinux2014``
resolves to an old onnxruntime that crashes with numpy 2). Pure-Python packages that publish
only source distributions are built into ``py3-none-any`` wheels first. The result is cached
under ``~/.cache/edgekit/wheels/<key>`` (key: platform, Python, requirement lines), so a
rebuild does not download again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_toolkit.errors import BuildError
from edge_toolkit.packager.targets import PLATFORMS, template_text, wheel_platform_tags

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEKIT_CACHE"
COMPLETE = ".complete"
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class WheelSet:
    folder: Path
    files: tuple[Path, ...]
    cached: bool
    seconds: float

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "edgekit"


def wheel_cache_key(platform: str, python_version: str, requirements: Sequence[str]) -> str:
    text = "\n".join([PLATFORMS[platform][1], python_version, *requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def download_wheels(
    requirements: Sequence[str],
    platform: str,
    python_version: str,
    cache: Path | None = None,
    on_download: Callable[[str], None] | None = None,
) -> WheelSet:
    """Wheels for ``requirements`` on ``platform``; raises BuildError with pip's log on failure.

    ``on_download`` hears of each wheel (``"<file> (<size>)"``) as pip saves it, for progress."""
    lines = [r.strip() for r in requirements if r.strip() and not r.strip().startswith("#")]
    key = wheel_cache_key(platform, python_version, lines)
    folder = (cache or cache_root()) / "wheels" / f"{platform}-{key}"
    if (folder / COMPLETE).is_file():
        return WheelSet(folder, _wheels(folder), cached=True, seconds=0.0)
    started = time.perf_counter()
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        sdist_only = _pure_python_sdists()
        local = [line for line in lines if _name(line) in sdist_only]
        log_text = ""
        if local:
            log_text += _pip(["wheel", "--no-deps", "--wheel-dir", str(staging), *local])
            for built in _wheels(staging):
                if not built.name.endswith("-py3-none-any.whl") and not built.name.endswith(
                    "-py2.py3-none-any.whl"
                ):
                    raise BuildError(
                        f"{built.name} is not a pure-Python wheel, so it cannot go to {platform}; "
                        "remove it from module_templates/common/wheels.yaml",
                        log=log_text,
                    )
        requirement_file = staging / "requirements.txt"
        requirement_file.write_text("\n".join(lines) + "\n")
        log_text += _pip(
            [
                "download",
                "--progress-bar",
                "off",
                "--only-binary=:all:",
                *[arg for tag in wheel_platform_tags(platform) for arg in ("--platform", tag)],
                "--python-version",
                python_version,
                "--implementation",
                "cp",
                "--find-links",
                str(staging),
                "--dest",
                str(staging),
                "-r",
                str(requirement_file),
            ],
            on_download,
        )
        requirement_file.unlink()
        (staging / COMPLETE).write_text(log_text)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    wheels = WheelSet(folder, _wheels(folder), cached=False, seconds=time.perf_counter() - started)
    log.info(
        "wheels downloaded",
        extra={
            "platform": platform,
            "count": len(wheels.files),
            "bytes": wheels.size,
            "seconds": wheels.seconds,
        },
    )
    return wheels


def place_wheels(wheels: WheelSet | None, destination: Path, exclude: WheelSet | None = None) -> None:
    """Put the wheels into the build context (hard links when possible: no copy).

    ``None`` leaves the folder empty but present (the Dockerfile copies it either way); wheels
    named in ``exclude`` are left out.
    """
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    (destination / ".keep").write_text("")
    skip = set() if exclude is None else {w.name for w in exclude.files}
    for wheel in () if wheels is None else wheels.files:
        if wheel.name in skip:
            continue
        try:
            os.link(wheel, destination / wheel.name)
        except OSError:
            shutil.copyfile(wheel, destination / wheel.name)


# pip ends each wheel it fetched (from an index, its cache or a local folder) with one of these
# lines and the file's path: the least fragile part of its output to follow.
_SAVED_LINES = ("Saved ", "File was already downloaded ")


def _pip(args: list[str], on_download: Callable[[str], None] | None = None) -> str:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    # pip's output is read as it comes (stderr merged), so downloads can be shown one by one.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        text = line.strip()
        prefix = next((p for p in _SAVED_LINES if text.startswith(p)), None)
        if on_download is not None and prefix is not None:
            saved = Path(text.removeprefix(prefix))
            size = saved.stat().st_size if saved.is_file() else 0
            on_download(f"{saved.name} ({size / 1e6:.1f} MB)")
    returncode = process.wait()
    output = f"$ pip {' '.join(args)}\n{''.join(lines)}"
    if returncode != 0:
        # pip's own "ERROR:" line says what failed; warnings may come after it.
        errors = [line for line in lines if line.startswith("ERROR:")]
        last = errors or [line for line in lines if line.strip()]
        reason = last[-1].strip() if last else "pip exited with an error"
        raise BuildError(
            f"downloading the device-side wheels failed: {reason}"
            " (check the requirements; the full pip log is attached)",
            log=output,
        )
    return output


def _pure_python_sdists() -> set[str]:
    data = yaml.safe_load(template_text("wheels.yaml")) or {}
    return {_normalise(str(n)) for n in data.get("pure_python_sdists") or ()}


def _name(line: str) -> str:
    match = _NAME_RE.match(line)
    return _normalise(match.group(1)) if match else ""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheels(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(folder.glob("*.whl")))
