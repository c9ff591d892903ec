"""Desired state: turn the hub's ``edgekit`` document into served models and settings.

For each new revision: validate (the same rules as the config file), download every ``url`` model
into a staging folder while hashing it, verify the sha256, move it into the model cache, then ask
the host to load, warm and swap the whole set atomically. The outcome is reported as ``applied``
(with the effective models) or ``failed`` (with the reason; the previous set keeps serving).

After a swap that brought new versions, a watch window follows: if a new version's error rate
passes ``rollback.error_rate_threshold`` once it has served ``min_requests``, the host rolls back
and ``rolled_back`` is reported with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent import __version__
from device_agent.config import (
    AgentConfig,
    HealthConfig,
    ModelConfig,
    RollbackConfig,
    parse_config,
)
from device_agent.errors import AgentError, ConfigError, DesiredStateError, ModelLoadError
from device_agent.health import utc_now
from device_agent.host import ModelHost, ServedModel

log = logging.getLogger(__name__)

_DOWNLOAD_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

ReportState = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class DesiredState:
    revision: int | None
    models: tuple[ModelConfig, ...] | None  # None: the document does not manage models
    health: HealthConfig | None
    log_level: str | None
    rollback: RollbackConfig | None
    api_keys: tuple[str, ...] | None


def parse_desired(document: Mapping[str, Any]) -> DesiredState:
    """Validate an ``edgekit`` desired document; raises :class:`ConfigError` naming the field."""
    if not isinstance(document, Mapping):
        raise ConfigError("edgekit", "expected an object")
    unknown = sorted(set(document) - {"revision", "models", "settings"})
    if unknown:
        raise ConfigError(f"edgekit.{unknown[0]}", "unknown field; expected revision, models, settings")
    revision = document.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise ConfigError("edgekit.revision", f"expected an integer, got {revision!r}")
    settings = document.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError("edgekit.settings", "expected an object")
    unknown = sorted(set(settings) - {"health", "log_level", "rollback", "server"})
    if unknown:
        raise ConfigError(
            f"edgekit.settings.{unknown[0]}", "unknown field; expected health, log_level, rollback, server"
        )
    # Reuse the config file's parser: one set of rules and the same field-naming errors.
    plain: dict[str, Any] = {}
    if "models" in document:
        plain["models"] = document["models"]
    for key in ("health", "log_level", "rollback"):
        if key in settings:
            plain[key] = settings[key]
    server = settings.get("server")
    if server is not None:
        if not isinstance(server, Mapping) or set(server) - {"api_keys"}:
            raise ConfigError("edgekit.settings.server", "only 'api_keys' can be set from the hub")
        plain["server"] = {"api_keys": server.get("api_keys", [])}
    try:
        config = parse_config(plain)
    except ConfigError as exc:
        raise ConfigError(f"edgekit.{exc.field}", exc.problem) from None
    for i, model in enumerate(config.models):
        if model.url is not None and model.sha256 is None:
            raise ConfigError(f"edgekit.models[{i}].sha256", "required with 'url' (the agent verifies it)")
    return DesiredState(
        revision=revision,
        models=config.models if "models" in document else None,
        health=config.health if "health" in settings else None,
        log_level=config.log_level if "log_level" in settings else None,
        rollback=config.rollback if "rollback" in settings else None,
        api_keys=config.server.api_keys if server is not None else None,
    )


@dataclass
class RuntimeSettings:
    """Settings the hub may change while the agent runs; read by the supervisor's loops."""

    health: HealthConfig
    rollback: RollbackConfig
    log_level: str

    @classmethod
    def from_config(cls, config: AgentConfig) -> RuntimeSettings:
        return cls(config.health, config.rollback, config.log_level)


def set_log_level(level: str) -> None:
    """Change the agent's log level (root logger), as the hub's ``log_level`` setting asks."""
    if level not in _LOG_LEVELS:
        raise ConfigError("log_level", f"got {level!r}; expected one of {', '.join(_LOG_LEVELS)}")
    logging.getLogger().setLevel(_LOG_LEVELS[level])


def download(url: str, sha256: str, staging: Path, destination: Path) -> Path:
    """Fetch ``url`` into ``staging`` while hashing it; move it to ``destination`` only if the
    sha256 matches. A cached file with the right hash is reused without a download."""
    if destination.exists() and _sha256_file(destination) == sha256:
        return destination
    staging.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, temp_name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=staging)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                    while chunk := response.read(_DOWNLOAD_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot download {url}: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise ModelLoadError(f"sha256 mismatch for {url}: expected {sha256}, downloaded {actual}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, destination)  # same file system: atomic, so the cache never holds half a file
        return destination
    finally:
        temp.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def served_to_report(models: Sequence[ServedModel]) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "version": m.version,
            "sha256": m.sha256,
            "providers": list(m.providers),
            "ready": m.ready,
        }
        for m in models
    ]


def incompatible_signature(old: Sequence[ServedModel], new: Sequence[ServedModel]) -> str | None:
    """Why a new version of a model name cannot replace the old one, or ``None`` when it can:
    the same input and output names, datatypes and shapes (``-1`` dimensions included)."""
    previous = {m.name: m for m in old}
    for model in new:
        before = previous.get(model.name)
        if before is None or before.version == model.version:
            continue
        for what, a, b in (
            ("inputs", before.inputs, model.inputs),
            ("outputs", before.outputs, model.outputs),
        ):
            if _signature(a) != _signature(b):
                return (
                    f"model {model.name} version {model.version} has incompatible {what}: "
                    f"{_signature(b)} instead of {_signature(a)} (version {before.version})"
                )
    return None


def _signature(tensors: Sequence[Mapping[str, Any]]) -> list[tuple[Any, Any, Any]]:
    return sorted((t.get("name"), t.get("datatype"), tuple(t.get("shape") or ())) for t in tensors)


class Reconciler:
    """Applies desired states one at a time and watches fresh versions for automatic rollback."""

    def __init__(
        self,
        host: ModelHost,
        data_dir: Path,
        settings: RuntimeSettings,
        report: ReportState,
        set_api_keys: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.host = host
        self.data_dir = data_dir
        self.settings = settings
        self._report = report
        self._set_api_keys = set_api_keys
        self._lock = asyncio.Lock()
        self._applied_revision: int | None = None
        self._last_document: dict[str, Any] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.last_report: dict[str, Any] | None = None

    async def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one desired ``edgekit`` document; returns the reported ``edgekit`` section."""
        async with self._lock:
            revision = document.get("revision") if isinstance(document, Mapping) else None
            if self._last_document is not None and dict(document) == self._last_document:
                # The same document again (retained message or twin GET after a reconnect).
                assert self.last_report is not None
                return self.last_report
            self._last_document = dict(document)
            await self._send(revision, "applying", None, self.host.served_models())
            try:
                desired = parse_desired(document)
                served = await self._apply(desired)
            except AgentError as exc:
                log.warning("desired state failed", extra={"revision": revision, "error": str(exc)})
                return await self._send(revision, "failed", str(exc), self.host.served_models())
            self._applied_revision = desired.revision
            log.info("desired state applied", extra={"revision": revision})
            return await self._send(revision, "applied", None, served)

    async def _apply(self, desired: DesiredState) -> list[ServedModel]:
        if desired.log_level is not None:
            set_log_level(desired.log_level)
        if desired.api_keys is not None:
            if self._set_api_keys is None:
                raise DesiredStateError("settings.server.api_keys cannot be changed on this agent")
            self._set_api_keys(desired.api_keys)
        if desired.health is not None:
            self.settings.health = desired.health
        if desired.rollback is not None:
            self.settings.rollback = desired.rollback
        if desired.log_level is not None:
            self.settings.log_level = desired.log_level
        if desired.models is None:
            return self.host.served_models()
        old_served = self.host.served_models()
        before = {(m.name, m.version) for m in old_served}
        local = [await asyncio.to_thread(self._localise, m) for m in desired.models]

        def same_signatures(candidate: Sequence[ServedModel]) -> None:
            # Clients of a model name rely on its tensors: a new version that changes them is
            # refused before the switch, so no request ever meets it.
            problem = incompatible_signature(old_served, candidate)
            if problem is not None:
                raise DesiredStateError(f"{problem}; the previous version keeps serving")

        served = await self.host.apply_models(local, accept=same_signatures)
        fresh = [(m.name, m.version) for m in served if (m.name, m.version) not in before]
        if fresh and before and self.settings.rollback.enabled:
            self._start_watch(fresh, desired.revision)
        return served

    def _localise(self, model: ModelConfig) -> ModelConfig:
        """A model with a local ``path``: downloaded and verified when it came as a ``url``."""
        if model.path is not None or model.url is None:
            return model
        assert model.sha256 is not None  # parse_desired requires it with url
        destination = self.data_dir / "models" / model.name / model.version / f"{model.sha256}.onnx"
        path = download(model.url, model.sha256, self.data_dir / "staging", destination)
        return dataclasses.replace(model, path=str(path))

    async def _send(
        self, revision: Any, status: str, error: str | None, models: Sequence[ServedModel]
    ) -> dict[str, Any]:
        section = {
            "revision": revision,
            "status": status,
            "error": error,
            "models": served_to_report(models),
            "agent_version": __version__,
            "updated_at": utc_now(),
        }
        if status != "applying":
            self.last_report = section
        await self._report({"edgekit": section})
        return section

    # automatic rollback ----------------------------------------------------------------------
    def _start_watch(self, fresh: list[tuple[str, str]], revision: int | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch = asyncio.create_task(self._watch_fresh(fresh, revision), name="hub-rollback-watch")

    async def _watch_fresh(self, fresh: list[tuple[str, str]], revision: int | None) -> None:
        policy = self.settings.rollback
        deadline = asyncio.get_running_loop().time() + policy.watch_window_s
        step = max(0.05, min(1.0, policy.watch_window_s / 20))
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(step)
            for stat in self.host.stats():
                if (stat.name, stat.version) not in fresh or stat.requests < policy.min_requests:
                    continue
                rate = stat.errors / stat.requests
                if rate > policy.error_rate_threshold:
                    await self._roll_back(stat.name, stat.version, rate, revision)
                    return

    async def _roll_back(self, name: str, version: str, rate: float, revision: int | None) -> None:
        reason = (
            f"model {name} version {version} failed {rate:.0%} of requests "
            f"(threshold {self.settings.rollback.error_rate_threshold:.0%}); rolled back"
        )
        async with self._lock:
            try:
                served = await self.host.rollback()
            except AgentError as exc:
                log.error("automatic rollback failed", extra={"model": name, "error": str(exc)})
                await self._send(
                    revision, "failed", f"{reason}, but the rollback failed: {exc}", self.host.served_models()
                )
                return
            log.warning("rolled back", extra={"model": name, "version": version, "error_rate": rate})
            await self._send(revision, "rolled_back", reason, served)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)


def clear_staging(data_dir: Path) -> None:
    """Leftover partial downloads from a killed process are garbage: remove them at start."""
    shutil.rmtree(data_dir / "staging", ignore_errors=True)
