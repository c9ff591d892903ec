"""``edgekit push``: tag a built image for a registry, push it, and return its digest."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_toolkit.errors import DockerError
from edge_toolkit.packager.credentials import RegistryCredentials
from edge_toolkit.packager.docker_client import DockerEngine
from edge_toolkit.packager.module import ModuleFolder

log = logging.getLogger(__name__)

_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class PushEvent:
    layer: str  # the layer id, or "" for messages about the whole image
    status: str
    current: int = 0
    total: int = 0


@dataclass(frozen=True)
class PushResult:
    image: str  # registry/module:version-platform
    digest: str  # sha256:…
    repo_digest: str  # registry/module@sha256:…
    layers: int
    layers_existing: int
    seconds: float


def registry_repository(module: ModuleFolder, registry: str) -> str:
    """``module.json``'s repository moved to ``registry`` (its path kept, its host replaced)."""
    if not _REGISTRY_RE.match(registry):
        raise DockerError(f"registry {registry!r} must be HOST or HOST:PORT (e.g. myregistry.azurecr.io)")
    first, _, rest = module.repository.partition("/")
    is_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if is_host else module.repository
    return f"{registry}/{path}"


def push_image(
    engine: DockerEngine,
    module: ModuleFolder,
    platform: str,
    registry: str,
    *,
    credentials: RegistryCredentials | None = None,
    on_event: Callable[[PushEvent], None] | None = None,
) -> PushResult:
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    local = module.image_name(platform)
    if not engine.image_exists(local):
        raise DockerError(
            f"{local} is not in the engine; run 'edgekit build {module.path} --platform {platform}'"
        )
    repository = registry_repository(module, registry)
    tag = f"{module.version}-{platform}"
    engine.tag(local, repository, tag)
    digest = ""
    layers: set[str] = set()
    existing: set[str] = set()
    auth = credentials.auth_config() if credentials is not None else None
    for chunk in engine.push(repository, tag, auth):
        if "error" in chunk:
            # The engine's message may echo the registry's answer, never our password.
            raise DockerError(f"pushing {repository}:{tag} failed: {chunk['error']}")
        layer = str(chunk.get("id", "")) if "progressDetail" in chunk else ""
        status = str(chunk.get("status", ""))
        if layer:
            layers.add(layer)
            if status == "Layer already exists":
                existing.add(layer)
        detail = chunk.get("progressDetail") or {}
        emit(PushEvent(layer, status, int(detail.get("current", 0) or 0), int(detail.get("total", 0) or 0)))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
            digest = aux["Digest"]
    if not _DIGEST_RE.match(digest):
        raise DockerError(f"the registry accepted {repository}:{tag} but reported no digest")
    result = PushResult(
        image=f"{repository}:{tag}",
        digest=digest,
        repo_digest=f"{repository}@{digest}",
        layers=len(layers),
        layers_existing=len(existing),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "image pushed",
        extra={
            "image": result.image,
            "digest": digest,
            "layers": result.layers,
            "seconds": round(result.seconds, 2),
        },
    )
    return result
