"""The served model set: load, warm, swap atomically, roll back, reload. Implements ModelHost.

Loading happens in the thread pool (ONNX Runtime releases the GIL while it builds a session), so
the event loop keeps answering requests on the old set until the single reference swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from device_agent.config import ModelConfig
from device_agent.engine import ModelSession, file_sha256
from device_agent.errors import AgentError, DesiredStateError, ModelLoadError
from device_agent.host import Acceptance, ModelStats, ServedModel
from device_agent.metrics import MetricsRegistry
from device_agent.service import InferenceService, ModelRuntime, ServedSet

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0


class ModelRepository:
    """What the agent serves now; the :class:`~device_agent.host.ModelHost` of the serving core."""

    def __init__(self, executor: Executor, metrics: MetricsRegistry, data_dir: Path) -> None:
        self._executor = executor
        self.metrics = metrics
        self._data_dir = data_dir
        self._current = ServedSet.build((), ())
        self._previous: tuple[ModelConfig, ...] | None = None
        self._lock = asyncio.Lock()
        self.service = InferenceService(lambda: self._current)
        # Ready once the configured set has loaded; a failed start keeps it False.
        self.ready = False

    @property
    def current(self) -> ServedSet:
        return self._current

    # --- ModelHost ---------------------------------------------------------------------------

    def served_models(self) -> list[ServedModel]:
        return [runtime.served() for runtime in self._current.runtimes()]

    def stats(self) -> list[ModelStats]:
        return [runtime.metrics.stats() for runtime in self._current.runtimes()]

    async def apply_models(
        self, models: Sequence[ModelConfig], accept: Acceptance | None = None
    ) -> list[ServedModel]:
        async with self._lock:
            before = self._current.configs
            await self._swap(models, reuse=True, accept=accept)
            self._previous = before
            self.ready = True
            return self.served_models()

    async def rollback(self) -> list[ServedModel]:
        async with self._lock:
            if self._previous is None:
                raise DesiredStateError("there is no earlier model set to roll back to")
            target = self._previous
            await self._swap(target, reuse=True)
            self._previous = None
            log.info("rolled back the model set", extra={"models": _describe(target)})
            return self.served_models()

    async def reload(self) -> list[ServedModel]:
        async with self._lock:
            await self._swap(self._current.configs, reuse=False)
            return self.served_models()

    async def infer_json(self, model: str, version: str | None, body: bytes) -> bytes:
        result, _ = await self.service.infer(model, version, body, None)
        return result

    # --- internals ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the batchers after what they hold has run (used at shutdown)."""
        for runtime in self._current.runtimes():
            await runtime.close()

    async def _swap(
        self, models: Sequence[ModelConfig], reuse: bool, accept: Acceptance | None = None
    ) -> None:
        old = self._current
        keep: dict[tuple[str, str], ModelRuntime] = {}
        if reuse:
            for runtime in old.runtimes():
                keep[(runtime.name, runtime.version)] = runtime
        loop = asyncio.get_running_loop()
        runtimes: list[ModelRuntime] = []
        for model in models:
            existing = keep.get((model.name, model.version))
            if existing is not None and existing.config == model:
                runtimes.append(existing)
                continue
            try:
                session = await loop.run_in_executor(self._executor, self._load, model)
            except AgentError as exc:
                log.error(
                    "model failed to load; the previous set keeps serving",
                    extra={"model": model.name, "version": model.version, "error": str(exc)},
                )
                await _close_new(runtimes, old)
                raise ModelLoadError(str(exc)) from exc
            runtimes.append(ModelRuntime(session, self.metrics.model(model.name, model.version)))
        if accept is not None:
            try:
                accept([runtime.served() for runtime in runtimes])
            except AgentError:
                await _close_new(runtimes, old)  # refused before the switch: nobody saw it
                raise
        new = ServedSet.build(models, runtimes)
        self._current = new  # the atomic switch: new requests see the new set from here on
        kept = {id(r) for r in runtimes}
        retired = [r for r in old.runtimes() if id(r) not in kept]
        for runtime in retired:
            # In-flight requests hold their runtime; closing the batcher lets queued rows finish.
            await runtime.close()
        for runtime in runtimes:
            if id(runtime) not in {id(r) for r in old.runtimes()}:
                s = runtime.session
                log.info(
                    "model ready",
                    extra={
                        "model": s.name,
                        "version": s.version,
                        "providers": list(s.providers),
                        "missing_providers": list(s.missing_providers),
                        "batching": runtime.batcher is not None,
                        "sha256": s.sha256,
                    },
                )

    def _load(self, model: ModelConfig) -> ModelSession:
        path = self._local_file(model)
        return ModelSession(model, path)

    def _local_file(self, model: ModelConfig) -> Path:
        if model.path is not None:
            return Path(model.path)
        assert model.url is not None  # config validation guarantees path or url
        if model.sha256 is None:
            raise ModelLoadError(
                f"model {model.name} version {model.version}: "
                "a model given by url needs a sha256 to be trusted"
            )
        target = self._data_dir / "models" / model.name / model.version / "model.onnx"
        if target.is_file() and file_sha256(target) == model.sha256:
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelLoadError(f"cannot create {target.parent}: {exc.strerror}; set data_dir") from exc
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as handle:
            part = Path(handle.name)
            try:
                with urllib.request.urlopen(model.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        handle.write(chunk)
            except (OSError, ValueError) as exc:
                part.unlink(missing_ok=True)
                raise ModelLoadError(
                    f"model {model.name} version {model.version}: download from {model.url} failed: {exc}"
                ) from exc
        if digest.hexdigest() != model.sha256:
            part.unlink(missing_ok=True)
            raise ModelLoadError(
                f"model {model.name} version {model.version}: {model.url} has sha256 {digest.hexdigest()}, "
                f"expected {model.sha256}"
            )
        shutil.move(part, target)
        return target


async def _close_new(runtimes: list[ModelRuntime], old: ServedSet) -> None:
    old_ids = {id(r) for r in old.runtimes()}
    for runtime in runtimes:
        if id(runtime) not in old_ids:
            await runtime.close()


def _describe(models: Sequence[ModelConfig]) -> list[str]:
    return [f"{m.name}:{m.version}" for m in models]
