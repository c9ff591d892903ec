"""Write a :class:`ModulePlan` to a module folder: the only file I/O of ``edgekit package``.

The folder is assembled next to its destination and swapped in with one rename, so an
interrupted package run leaves either the old folder or the new one, never half of each.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from edge_toolkit.blobs import sha256_file
from edge_toolkit.errors import PackagingError
from edge_toolkit.packager.plan import PLAN_JSON, ModulePlan
from edge_toolkit.packager.targets import template_text

log = logging.getLogger(__name__)

KEEP = ".keep"


def write_module(
    plan: ModulePlan,
    destination: Path,
    model_files: Mapping[tuple[str, int], Path],
    score_script: Path | None = None,
    force: bool = False,
) -> Path:
    """Write the module folder; ``model_files`` maps (name, version) to the registry blob."""
    destination = destination.resolve()
    if destination.exists():
        if not destination.is_dir():
            raise PackagingError(f"{destination} exists and is not a folder; choose another -o path")
        if any(destination.iterdir()) and not (destination / PLAN_JSON).is_file() and not force:
            raise PackagingError(
                f"{destination} is not empty and is not an edgekit module folder; "
                "choose another -o path or pass --force to replace it"
            )
    staging = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        for relative, text in plan.files.items():
            _write_text(staging / relative, text)
        for model in plan.options.models:
            source = model_files.get((model.name, model.version))
            if source is None or not source.is_file():
                raise PackagingError(
                    f"the file of {model.name}:{model.version} is missing from the registry; "
                    "register it again"
                )
            target = staging / model.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            if sha256_file(target) != model.sha256:
                raise PackagingError(
                    f"the stored file of {model.name}:{model.version} does not match its sha256; "
                    "the registry's blob store is damaged: register the model again"
                )
        score = staging / "score"
        score.mkdir()
        if plan.options.score_script is not None:
            if score_script is None or not score_script.is_file():
                raise PackagingError(f"scoring script {score_script}: no such file")
            shutil.copyfile(score_script, score / plan.options.score_script)
        else:
            (score / KEEP).write_text("")
        _copy_agent(staging / "app")
        data = staging / "data"  # becomes /var/lib/edge-agent, owned by the agent's user
        data.mkdir()
        (data / KEEP).write_text("")
        for platform in plan.options.platforms:
            for part in ("agent", "user"):  # filled by `edgekit build --offline`
                wheels = staging / "wheels" / platform / part
                wheels.mkdir(parents=True)
                (wheels / KEEP).write_text("")
        if destination.exists():
            # Wheel locks outlive a re-package (a new model version): the versions stay pinned.
            # A lock made from other requirement lines is stale and ignored by the next build.
            for lock in (destination / "requirements").glob("*.lock"):
                shutil.copyfile(lock, staging / "requirements" / lock.name)
            old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            destination.rename(old)
            staging.rename(destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(destination)
    except OSError as exc:
        raise PackagingError(f"cannot write the module folder {destination}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "module written",
        extra={"edge_module": plan.options.module_name, "path": str(destination), "files": len(plan.files)},
    )
    return destination


def _copy_agent(app: Path) -> None:
    """Copy the device agent's code (only ``device_agent``, never the workspace side)."""
    import device_agent

    source = Path(device_agent.__file__).resolve().parent
    shutil.copytree(source, app / "device_agent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    launcher = app / "bin" / "edge-agent"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(template_text("edge-agent"))
    launcher.chmod(0o755)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
