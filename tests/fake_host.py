"""An in-memory ModelHost for hub-side tests: a real implementation with no ONNX Runtime.

A "model file" is any file; its first line decides its behaviour, so tests make models that
load, refuse to load, or fail requests:

    b"ok ..."     loads; infer_json echoes {"model_name", "model_version", "outputs": []}
    b"fail ..."   loads; every request fails (counts as an error)
    b"bad ..."    refuses to load (ModelLoadError)

Swaps are atomic like the real host's: a new set replaces the old only when every file loaded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent.config import ModelConfig
from device_agent.errors import (
    DesiredStateError,
    InferenceRuntimeError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
)
from device_agent.host import Acceptance, ModelStats, ServedModel


@dataclass
class _Loaded:
    config: ModelConfig
    behaviour: str
    served: ServedModel
    requests: int = 0
    errors: int = 0


class FakeHost:
    def __init__(self, load_delay_s: float = 0.0) -> None:
        self.load_delay_s = load_delay_s
        self._current: dict[str, _Loaded] = {}
        self._previous: list[dict[str, _Loaded]] = []
        self.applied: list[list[ModelConfig]] = []

    def served_models(self) -> list[ServedModel]:
        return [m.served for m in self._current.values()]

    def stats(self) -> list[ModelStats]:
        return [
            ModelStats(m.served.name, m.served.version, m.requests, m.errors, 0, 1.0, 2.0, 3.0)
            for m in self._current.values()
        ]

    def _load(self, model: ModelConfig) -> _Loaded:
        if model.path is None:
            raise ModelLoadError(f"model {model.name}: no local file")
        try:
            head = Path(model.path).read_bytes()[:4]
        except OSError as exc:
            raise ModelLoadError(f"model {model.name}: cannot read {model.path}: {exc}") from exc
        if head.startswith(b"bad"):
            raise ModelLoadError(f"model {model.name} version {model.version}: not a loadable model")
        behaviour = "fail" if head.startswith(b"fail") else "ok"
        served = ServedModel(
            model.name, model.version, model.sha256, ("CPUExecutionProvider",), (), True, time.time()
        )
        return _Loaded(model, behaviour, served)

    async def apply_models(
        self, models: Sequence[ModelConfig], accept: Acceptance | None = None
    ) -> list[ServedModel]:
        await asyncio.sleep(self.load_delay_s)
        loaded = {m.name: self._load(m) for m in models}  # raises before anything changes
        if accept is not None:
            accept([m.served for m in loaded.values()])
        self._previous.append(self._current)
        self._current = loaded
        self.applied.append(list(models))
        return self.served_models()

    async def rollback(self) -> list[ServedModel]:
        if not self._previous:
            raise DesiredStateError("nothing to roll back to")
        self._current = self._previous.pop()
        return self.served_models()

    async def reload(self) -> list[ServedModel]:
        self._current = {name: self._load(m.config) for name, m in self._current.items()}
        return self.served_models()

    async def infer_json(self, model: str, version: str | None, body: bytes) -> bytes:
        loaded = self._current.get(model)
        if loaded is None:
            raise ModelNotFoundError(f"model {model!r} is not served")
        try:
            request = json.loads(body)
        except ValueError:
            raise InvalidRequestError("the request body is not JSON") from None
        loaded.requests += 1
        if loaded.behaviour == "fail":
            loaded.errors += 1
            raise InferenceRuntimeError(f"model {model} failed")
        response = {"model_name": model, "model_version": loaded.served.version, "outputs": []}
        if isinstance(request, dict) and "id" in request:
            response["id"] = request["id"]
        return json.dumps(response).encode()
