"""A Debian base image made on this machine, for engines that cannot reach an image registry.

``mmdebstrap`` builds a minimal Debian (variant ``essential`` plus Python and what the agent
needs) into a tar that ``docker import`` turns into a one-layer image. The image is saved with
``docker save`` under ``~/.cache/edgekit/base-images/<recipe key>.tar``, so later runs and other
engines restore it in seconds instead of bootstrapping again (~25-50 s).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edge_toolkit.errors import DockerError
from edge_toolkit.packager.docker_client import DockerEngine
from edge_toolkit.packager.wheels import cache_root

log = logging.getLogger(__name__)

LOCAL_NAME = "debian-local"  # what users pass as --base-image


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "essential"
    packages: tuple[str, ...] = ("python3", "python3-venv", "libstdc++6", "ca-certificates")
    repository: str = "edgekit/debian-python"

    @property
    def key(self) -> str:
        text = "\n".join([self.suite, self.variant, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.suite}-{self.key}"


@dataclass(frozen=True)
class BaseImageResult:
    image: str
    source: str  # "engine" (already there), "cache" (docker load) or "mmdebstrap" (made now)
    seconds: float


def ensure_base_image(
    engine: DockerEngine, recipe: Recipe | None = None, cache: Path | None = None
) -> BaseImageResult:
    """Make sure the engine has the local base image; returns its name."""
    recipe = recipe or Recipe()
    started = time.perf_counter()
    if engine.image_exists(recipe.image):
        return BaseImageResult(recipe.image, "engine", time.perf_counter() - started)
    folder = (cache or cache_root()) / "base-images"
    saved = folder / f"{recipe.repository.replace('/', '_')}-{recipe.suite}-{recipe.key}.tar"
    if saved.is_file():
        engine.load_image(saved)
        if engine.image_exists(recipe.image):
            log.info("base image restored", extra={"image": recipe.image, "tar": str(saved)})
            return BaseImageResult(recipe.image, "cache", time.perf_counter() - started)
        saved.unlink()  # a stale or foreign tar: make it again
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-base-", dir=folder) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _mmdebstrap(recipe, rootfs)
        repository, _, tag = recipe.image.rpartition(":")
        engine.import_image(rootfs, repository, tag)
        partial = saved.with_suffix(".tar.partial")
        engine.save_image(recipe.image, partial)
        partial.replace(saved)
    log.info("base image created", extra={"image": recipe.image, "tar": str(saved)})
    return BaseImageResult(recipe.image, "mmdebstrap", time.perf_counter() - started)


def _mmdebstrap(recipe: Recipe, output: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        raise DockerError(
            "making the local base image needs mmdebstrap (apt-get install mmdebstrap); "
            "or pass a base image the engine can pull, e.g. --base-image python:3.11-slim"
        )
    command = [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        # Snapshot mirrors serve Release files whose Valid-Until has passed.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        # Docs and locales are dead weight in an image.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        recipe.suite,
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-15:])
        raise DockerError(f"mmdebstrap could not make the base image (exit {result.returncode}):\n{tail}")
