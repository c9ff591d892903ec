"""``edgekit build``: a module folder → an image in the engine, checked and described.

The engine streams the build as JSON chunks; a failure arrives as an ``error`` chunk, so the
whole log is kept and attached to :class:`BuildError`. Progress is reported as
:class:`BuildEvent` values to a callback (the CLI draws them with rich; tests count them).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge_toolkit.errors import BuildError, DockerError
from edge_toolkit.packager.base_image import LOCAL_NAME, ensure_base_image
from edge_toolkit.packager.docker_client import DockerEngine
from edge_toolkit.packager.lock import lock_path, read_lock, write_lock
from edge_toolkit.packager.module import ModuleFolder
from edge_toolkit.packager.wheels import WheelSet, download_wheels, place_wheels

log = logging.getLogger(__name__)

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# Docker's architecture names for the IoT Edge platform names.
ARCHITECTURES = {"amd64": "amd64", "arm64v8": "arm64"}


@dataclass(frozen=True)
class BuildEvent:
    kind: str  # "phase" (wheels, base image, build), "download" (a wheel fetched), "step", "cached", "line"
    text: str
    step: int = 0
    total: int = 0


@dataclass(frozen=True)
class BuildResult:
    module: str
    platform: str
    image: str
    image_id: str
    architecture: str
    size: int
    steps: int
    cached_steps: int
    seconds: float
    log: str
    base_image: str
    wheels: WheelSet | None = None
    extra_tags: tuple[str, ...] = field(default=())


def build_module(
    module: ModuleFolder,
    platform: str,
    engine: DockerEngine,
    *,
    base_image: str | None = None,
    offline: bool = False,
    extra_tags: Sequence[str] = (),
    network_mode: str | None = None,
    on_event: Callable[[BuildEvent], None] | None = None,
) -> BuildResult:
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    dockerfile = module.dockerfile(platform)
    buildargs: dict[str, str] = {}
    wheels = None
    if offline:
        emit(BuildEvent("phase", f"downloading device-side wheels for {platform}"))

        def downloading(what: str) -> None:
            emit(BuildEvent("download", what))

        def pinned(part: str, source: list[str]) -> WheelSet:
            # The lock's exact versions when there is a current one; else resolve and lock them.
            path = lock_path(module.path, part, platform)
            pins = read_lock(path, source)
            fetched = download_wheels(
                pins or source, platform, module.python_version, on_download=downloading
            )
            if pins is None:
                write_lock(path, source, fetched.files, platform)
            return fetched

        agent = module.requirements("agent")
        wheels = pinned("agent", agent)
        place_wheels(wheels, module.path / "wheels" / platform / "agent")
        user = module.requirements("user")
        if user:
            # Resolved together with the agent's (one consistent set); only the extra wheels go
            # to the user folder, so the agent layer stays cached when the script's list changes.
            everything = pinned("user", [*agent, *user])
            place_wheels(everything, module.path / "wheels" / platform / "user", exclude=wheels)
            wheels = everything
        else:
            place_wheels(None, module.path / "wheels" / platform / "user")
        # pip reads PIP_NO_INDEX from the environment; the Dockerfile declares it as an ARG.
        buildargs["PIP_NO_INDEX"] = "1"
    if base_image == LOCAL_NAME:
        emit(BuildEvent("phase", "preparing the local Debian base image"))
        base_image = ensure_base_image(engine).image
    if base_image:
        buildargs["BASE_IMAGE"] = base_image
    image = module.image_name(platform)
    emit(BuildEvent("phase", f"building {image}"))
    lines: list[str] = []
    steps = cached = 0
    image_id = ""
    for chunk in engine.build(
        module.path,
        dockerfile,
        image,
        platform=ModuleFolder.docker_platform(platform),
        buildargs=buildargs,
        # Offline builds get no network at all: proof that nothing is fetched during the build.
        network_mode=network_mode or ("none" if offline else "host"),
    ):
        if "error" in chunk:
            message = str(chunk.get("error", "")).strip()
            lines.append(message)
            log.warning(
                "build failed", extra={"edge_module": module.name, "platform": platform, "error": message}
            )
            raise BuildError(
                f"building {image} failed: {_last_line(message)} (full log in BuildError.log; "
                "'edgekit build --log-file' writes it out)",
                log="\n".join(lines),
            )
        text = chunk.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                if not line.strip():
                    continue
                lines.append(line)
                step = _STEP_RE.match(line)
                if step:
                    steps += 1
                    emit(BuildEvent("step", step.group(3), int(step.group(1)), int(step.group(2))))
                elif line.strip() == "---> Using cache":
                    cached += 1
                    emit(BuildEvent("cached", line.strip()))
                else:
                    emit(BuildEvent("line", line))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            image_id = str(aux["ID"])
    try:
        details = engine.inspect_image(image)
    except DockerError as exc:
        raise BuildError(
            f"the engine finished the build but has no image {image}", log="\n".join(lines)
        ) from exc
    image_id = str(details.get("Id") or image_id)
    architecture = str(details.get("Architecture", ""))
    expected = ARCHITECTURES[platform]
    if architecture != expected:
        raise BuildError(
            f"{image} was built for {architecture or 'an unknown architecture'}, not {expected}; "
            "the base image has no variant for this platform (or the engine cannot emulate it: "
            "install qemu-user-static / binfmt for cross builds)",
            log="\n".join(lines),
        )
    for ref in extra_tags:
        repository, _, tag = ref.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = ref, "latest"
        engine.tag(image, repository, tag)
    result = BuildResult(
        module=module.name,
        platform=platform,
        image=image,
        image_id=image_id,
        architecture=architecture,
        size=int(details.get("Size", 0)),
        steps=steps,
        cached_steps=cached,
        seconds=time.perf_counter() - started,
        log="\n".join(lines),
        base_image=base_image or "",
        wheels=wheels,
        extra_tags=tuple(extra_tags),
    )
    log.info(
        "image built",
        extra={
            "edge_module": module.name,
            "image": image,
            "image_id": image_id,
            "steps": steps,
            "cached_steps": cached,
            "seconds": round(result.seconds, 2),
        },
    )
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the engine reported an error"
