"""The transport-neutral inference core shared by every front end (HTTP, MQTT, IoT Edge).

It resolves the model version, decodes and validates tensors against the signature, runs the
session (inline, in the thread pool, or through the batcher), records metrics and encodes the
answer. It raises only our own exceptions; each front end maps them to its status codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from device_agent import codecs
from device_agent.batching import Batcher
from device_agent.config import ModelConfig
from device_agent.engine import ModelSession
from device_agent.errors import InferenceError, InferenceRuntimeError, InvalidRequestError, ModelNotFoundError
from device_agent.host import ServedModel
from device_agent.metrics import ModelMetrics

log = logging.getLogger(__name__)

# A call this short costs less than the hop to a worker thread and back (~50-100 µs with the
# wake-ups), so it runs on the event loop itself; longer calls go to the model's worker thread so
# the loop keeps reading (and decoding) the next requests meanwhile.
INLINE_BELOW_S = 0.0005
# With nothing else waiting for the model, a call up to this long also runs inline: there is
# nothing to overlap it with, and the hop would only add latency. Longer calls never block the
# loop, so health probes stay answered.
INLINE_WHEN_IDLE_BELOW_S = 0.005
_EWMA = 0.2


class ModelRuntime:
    """One served model version: its session, metrics, optional batcher and cached metadata."""

    def __init__(self, session: ModelSession, metrics: ModelMetrics) -> None:
        self.session = session
        self.config: ModelConfig = session.config
        self.name = session.name
        self.version = session.version
        self.metrics = metrics
        # One worker thread per model: ONNX Runtime already spreads one call over the cores
        # (intra-op threads), so two concurrent calls of one model only fight over them.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"run-{session.name}-{session.version}")
        self._ewma_s = 0.0  # warm-up ran already; the first real call decides the path
        self.batcher: Batcher | None = None
        batching = self.config.batching
        if batching.enabled and session.batchable and batching.max_batch_size > 1:
            self.batcher = Batcher(
                run=session.run,
                executor=self._worker,
                max_rows=batching.max_batch_size,
                max_delay_s=batching.max_queue_delay_ms / 1000.0,
                on_batch=metrics.batch_size.observe,
                name=f"batcher:{self.name}:{self.version}",
            )
        elif batching.enabled:
            log.warning(
                "batching disabled: the inputs and outputs do not all lead with the same named dimension",
                extra={"model": self.name, "version": self.version},
            )

    def served(self) -> ServedModel:
        s = self.session
        return ServedModel(
            name=s.name,
            version=s.version,
            sha256=s.sha256,
            providers=s.providers,
            missing_providers=s.missing_providers,
            ready=True,
            loaded_at=s.loaded_at,
            inputs=tuple(spec.metadata() for spec in s.inputs),
            outputs=tuple(spec.metadata() for spec in s.outputs),
        )

    async def run(self, feeds: dict[str, np.ndarray], names: Sequence[str] | None) -> list[np.ndarray]:
        if self.batcher is not None:
            outputs = await self.batcher.submit(feeds)
            if names is None:
                return outputs
            index = self.session.output_names
            return [outputs[index.index(n)] for n in names]
        ewma = self._ewma_s
        if ewma < INLINE_BELOW_S or (ewma < INLINE_WHEN_IDLE_BELOW_S and self.metrics.in_flight <= 1):
            return self._timed_run(feeds, names)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._timed_run, feeds, names)

    def _timed_run(self, feeds: dict[str, np.ndarray], names: Sequence[str] | None) -> list[np.ndarray]:
        # Only the run itself is timed: time spent queued for the worker must not make a fast
        # model look slow (it would then never come back to the inline path).
        started = time.perf_counter()
        try:
            return self.session.run(feeds, names)
        finally:
            self._ewma_s += _EWMA * (time.perf_counter() - started - self._ewma_s)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        # Calls already handed to the worker finish; the thread then exits.
        self._worker.shutdown(wait=False)


@dataclass(frozen=True)
class ServedSet:
    """An immutable snapshot of what is served; swapping the reference is the atomic switch."""

    configs: tuple[ModelConfig, ...]
    versions: dict[str, dict[str, ModelRuntime]]
    defaults: dict[str, ModelRuntime]

    @classmethod
    def build(cls, configs: Sequence[ModelConfig], runtimes: Sequence[ModelRuntime]) -> ServedSet:
        versions: dict[str, dict[str, ModelRuntime]] = {}
        for runtime in runtimes:
            versions.setdefault(runtime.name, {})[runtime.version] = runtime
        defaults = {
            name: by_version[max(by_version, key=_version_key)] for name, by_version in versions.items()
        }
        return cls(tuple(configs), versions, defaults)

    def find(self, name: str, version: str | None) -> ModelRuntime:
        if version is None:
            runtime = self.defaults.get(name)
            if runtime is None:
                raise ModelNotFoundError(f"no model named {name!r} is served{self._hint()}")
            return runtime
        by_version = self.versions.get(name)
        if by_version is None:
            raise ModelNotFoundError(f"no model named {name!r} is served{self._hint()}")
        runtime = by_version.get(version)
        if runtime is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r}; served versions: {', '.join(sorted(by_version))}"
            )
        return runtime

    def runtimes(self) -> list[ModelRuntime]:
        return [r for by_version in self.versions.values() for r in by_version.values()]

    def _hint(self) -> str:
        return f"; served models: {', '.join(sorted(self.versions))}" if self.versions else "; none is loaded"


def _version_key(version: str) -> tuple[int, int, str]:
    # Numeric versions compare as numbers (10 > 9); others sort after them by text.
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class InferenceService:
    """Serves v2 requests and AML-style /score against the current :class:`ServedSet`."""

    def __init__(self, current: Callable[[], ServedSet]) -> None:
        self._current = current

    def find(self, name: str, version: str | None) -> ModelRuntime:
        return self._current().find(name, version)

    async def infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None = None
    ) -> tuple[bytes, int | None]:
        """One v2 infer request; returns ``(body, header_length)`` (see :mod:`codecs`)."""
        runtime = self._current().find(name, version)
        metrics = runtime.metrics
        started = time.perf_counter()
        metrics.begin()
        try:
            request = codecs.decode_request(body, header_length)
            feeds = validate_inputs(runtime.session, request.inputs, request.datatypes)
            selected = _select_outputs(runtime.session, request)
            names = None if selected is None else [n for n, _ in selected]
            arrays = await runtime.run(feeds, names)
            if selected is None:
                binary = request.binary_output
                outputs = [(n, a, binary) for n, a in zip(runtime.session.output_names, arrays, strict=True)]
            else:
                outputs = [(n, a, b) for (n, b), a in zip(selected, arrays, strict=True)]
            result = codecs.encode_response(runtime.name, runtime.version, request.id, outputs)
        except InferenceError as exc:
            _count_error(metrics, exc)
            raise
        finally:
            metrics.in_flight -= 1
        metrics.observe(time.perf_counter() - started)
        return result

    async def score(self, body: bytes) -> bytes:
        """AML-style ``{"data": …}`` against the first configured model version."""
        served = self._current()
        if not served.configs:
            raise ModelNotFoundError("no model is loaded yet")
        first = served.configs[0]
        runtime = served.find(first.name, first.version)
        metrics = runtime.metrics
        started = time.perf_counter()
        metrics.begin()
        try:
            feeds = score_feeds(runtime.session, body)
            arrays = await runtime.run(feeds, None)
            names = runtime.session.output_names
            answer: Any = arrays[0] if len(arrays) == 1 else dict(zip(names, arrays, strict=True))
            result = codecs.dumps(answer)
        except InferenceError as exc:
            _count_error(metrics, exc)
            raise
        finally:
            metrics.in_flight -= 1
        metrics.observe(time.perf_counter() - started)
        return result


def _count_error(metrics: ModelMetrics, exc: InferenceError) -> None:
    if isinstance(exc, InferenceRuntimeError):
        metrics.errors += 1
    else:
        metrics.client_errors += 1


def validate_inputs(
    session: ModelSession, inputs: dict[str, np.ndarray], datatypes: dict[str, str]
) -> dict[str, np.ndarray]:
    """Check names, datatypes and shapes against the signature; messages say what was expected."""
    specs = session.input_specs
    if len(inputs) != len(specs) or any(name not in specs for name in inputs):
        unknown = [n for n in inputs if n not in specs]
        missing = [n for n in specs if n not in inputs]
        expected = ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in session.inputs)
        problems = []
        if unknown:
            problems.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        raise InvalidRequestError(f"model {session.name}: {'; '.join(problems)}; it takes {expected}")
    for name, array in inputs.items():
        spec = specs[name]
        if datatypes[name] != spec.datatype:
            raise InvalidRequestError(
                f"input {name!r}: datatype {datatypes[name]} does not match the model's {spec.datatype}"
            )
        shape = array.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for got, want in zip(shape, spec.shape, strict=True)
        ):
            raise InvalidRequestError(
                f"input {name!r}: shape {list(shape)} does not match the model's {list(spec.shape)} "
                "(-1: any size)"
            )
    return inputs


def _select_outputs(session: ModelSession, request: codecs.InferRequest) -> list[tuple[str, bool]] | None:
    if request.outputs is None:
        return None
    selected = []
    for wanted in request.outputs:
        if wanted.name not in session.output_specs:
            raise InvalidRequestError(
                f"model {session.name} has no output {wanted.name!r}; "
                f"it has {', '.join(session.output_names)}"
            )
        selected.append((wanted.name, wanted.binary or request.binary_output))
    if not selected:
        raise InvalidRequestError("'outputs' is empty; leave it out to get every output")
    return selected


def score_feeds(session: ModelSession, body: bytes) -> dict[str, np.ndarray]:
    """``{"data": nested list}`` for a single-input model, or ``{"data": {input: nested list}}``."""
    import orjson

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise InvalidRequestError('expected a JSON object {"data": ...}')
    data = payload["data"]
    if isinstance(data, dict):
        given = data
    elif len(session.inputs) == 1:
        given = {session.inputs[0].name: data}
    else:
        names = ", ".join(s.name for s in session.inputs)
        raise InvalidRequestError(f"model {session.name} takes several inputs: send data as {{{names}}}")
    feeds: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for name, value in given.items():
        spec = session.input_specs.get(name)
        if spec is None:
            names = ", ".join(s.name for s in session.inputs)
            raise InvalidRequestError(f"model {session.name} has no input {name!r}; it takes {names}")
        try:
            array = np.array(value, dtype=spec.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidRequestError(f"input {name!r}: data does not fit {spec.datatype}: {exc}") from None
        # A single example may come without its batch dimension.
        if array.ndim == len(spec.shape) - 1 and spec.shape and spec.shape[0] in (-1, 1):
            array = array[np.newaxis]
        feeds[name] = array
        datatypes[name] = spec.datatype
    return validate_inputs(session, feeds, datatypes)
