"""ONNX Runtime sessions: provider choice, session options, signatures, warm-up and running.

This is the only serving module that imports ``onnxruntime``. One :class:`ModelSession` wraps one
``InferenceSession`` for one model version; everything above it sees numpy arrays, v2 datatypes
and our own exceptions.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.config import ModelConfig, SessionConfig
from device_agent.errors import InferenceRuntimeError, InvalidRequestError, ModelLoadError

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

# ONNX Runtime element types -> (Open Inference Protocol datatype, numpy dtype). Little-endian
# dtypes are explicit because the binary extension puts raw little-endian bytes on the wire.
ORT_TYPES: dict[str, tuple[str, np.dtype[Any]]] = {
    "tensor(bool)": ("BOOL", np.dtype(np.bool_)),
    "tensor(uint8)": ("UINT8", np.dtype("u1")),
    "tensor(uint16)": ("UINT16", np.dtype("<u2")),
    "tensor(uint32)": ("UINT32", np.dtype("<u4")),
    "tensor(uint64)": ("UINT64", np.dtype("<u8")),
    "tensor(int8)": ("INT8", np.dtype("i1")),
    "tensor(int16)": ("INT16", np.dtype("<i2")),
    "tensor(int32)": ("INT32", np.dtype("<i4")),
    "tensor(int64)": ("INT64", np.dtype("<i8")),
    "tensor(float16)": ("FP16", np.dtype("<f2")),
    "tensor(float)": ("FP32", np.dtype("<f4")),
    "tensor(double)": ("FP64", np.dtype("<f8")),
    "tensor(string)": ("BYTES", np.dtype(object)),
}

_GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}

# Providers already reported missing, so a fleet of model versions logs each gap once.
_reported_missing: set[str] = set()
_report_lock = threading.Lock()


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as the v2 metadata describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> tuple[list[str], list[str]]:
    """The configured preference intersected with what the runtime offers, CPU always last.

    Returns ``(effective, missing)``: missing lists what was asked for but is not installed.
    """
    offered = set(available)
    effective = [p for p in preferred if p in offered and p != CPU_PROVIDER]
    effective = [*dict.fromkeys(effective), CPU_PROVIDER]
    missing = [p for p in dict.fromkeys(preferred) if p not in offered]
    return effective, missing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def session_options(config: SessionConfig) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    level = _GRAPH_LEVELS.get(config.graph_optimization, "ORT_ENABLE_ALL")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if config.execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    # Failures reach the client and our log as exceptions with ORT's message; ORT's own stderr
    # lines would only repeat them outside the JSON log.
    options.log_severity_level = 4
    # ORT's pool threads spin after each call waiting for the next one. In a loop that wins; in a
    # server they burn the cores the event loop needs to read and parse the next request.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _specs(nodes: Sequence[Any], model: str) -> tuple[TensorSpec, ...]:
    specs = []
    for node in nodes:
        if node.type not in ORT_TYPES:
            raise ModelLoadError(
                f"model {model}: tensor {node.name!r} has type {node.type}, which this agent cannot serve"
            )
        datatype, dtype = ORT_TYPES[node.type]
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or []))
        specs.append(TensorSpec(node.name, datatype, shape, dtype))
    return tuple(specs)


class ModelSession:
    """One loaded, warmed model version."""

    def __init__(self, config: ModelConfig, path: Path, sha256: str | None = None) -> None:
        import onnxruntime as ort

        self.config = config
        self.name = config.name
        self.version = config.version
        self.path = path
        if not path.is_file():
            raise ModelLoadError(f"model {config.name} version {config.version}: no file at {path}")
        actual = file_sha256(path)
        expected = sha256 or config.sha256
        if expected is not None and actual != expected:
            raise ModelLoadError(
                f"model {config.name} version {config.version}: {path} has sha256 {actual}, "
                f"expected {expected}; the file is corrupt or not the registered version"
            )
        self.sha256 = actual
        effective, missing = choose_providers(config.providers, ort.get_available_providers())
        _report_missing(config, missing)
        options = [config.provider_options.get(p, {}) for p in effective]
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=session_options(config.session),
                providers=effective,
                provider_options=options,
            )
        except Exception as exc:  # ORT raises its own pybind exception types, all Exception
            raise ModelLoadError(
                f"model {config.name} version {config.version}: ONNX Runtime cannot load {path}: {exc}"
            ) from exc
        self.providers = tuple(self._session.get_providers())
        # A GPU build of ONNX Runtime offers CUDA/TensorRT even where no GPU or CUDA library is
        # present; the session then quietly runs on CPU. Report that as missing too.
        unusable = [p for p in effective if p not in self.providers]
        _report_unusable(config, unusable, self.providers)
        self.missing_providers = (*missing, *unusable)
        self.inputs = _specs(self._session.get_inputs(), config.name)
        self.outputs = _specs(self._session.get_outputs(), config.name)
        self.input_specs = {spec.name: spec for spec in self.inputs}
        self.output_names = [spec.name for spec in self.outputs]
        self.output_specs = {spec.name: spec for spec in self.outputs}
        self.batchable = _shares_a_batch_dimension(
            [*self._session.get_inputs(), *self._session.get_outputs()]
        )
        self._ort_errors = _runtime_error_types(ort)
        # The C++ session's run, called directly: the Python wrapper re-validates the feeds (we
        # already did, against the same signature) and costs ~4 µs a call, a third of a tiny
        # model's whole run.
        self._run = self._session._sess.run
        if config.warmup:
            self.warm_up()
        self.loaded_at = time.time()

    def warm_up(self) -> None:
        """Run once on zeros (free dims as 1) so first-request allocations happen before ready."""
        feeds = {}
        for spec in self.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        started = time.perf_counter()
        try:
            self._session.run(None, feeds)
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.name} version {self.version}: warm-up run on zeros (free dimensions as 1) "
                f"failed: {exc}; set 'warmup: false' for a model that cannot run on such input"
            ) from exc
        log.debug(
            "model warmed up",
            extra={"model": self.name, "version": self.version, "ms": (time.perf_counter() - started) * 1e3},
        )

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None) -> list[np.ndarray]:
        """Run the session; ORT's own errors become ours, with the runtime's message."""
        try:
            result: list[np.ndarray] = self._run(output_names or self.output_names, feeds, None)
        except self._ort_errors[0] as exc:
            raise InvalidRequestError(f"ONNX Runtime rejected the input: {exc}") from exc
        except Exception as exc:
            raise InferenceRuntimeError(f"ONNX Runtime failed: {exc}") from exc
        return result


def _shares_a_batch_dimension(nodes: Sequence[Any]) -> bool:
    """Whether rows of several requests can be stacked and split back exactly: every input and
    output must lead with the *same* named free dimension. A free first dimension alone is not
    enough (a Transpose maps ``[n, m]`` to ``[m, n]``: both lead with a free dimension, but not
    the batch), and an unnamed one cannot be proven to be the batch, so either is served
    unbatched."""
    leading = {node.shape[0] if node.shape else None for node in nodes}
    return len(leading) == 1 and isinstance(next(iter(leading)), str)


def _runtime_error_types(ort: Any) -> tuple[type[Exception]]:
    state = ort.capi.onnxruntime_pybind11_state
    return (state.InvalidArgument,)


def _first_report(providers: Sequence[str]) -> list[str]:
    with _report_lock:
        new = [p for p in providers if p not in _reported_missing]
        _reported_missing.update(new)
    return new


def _report_missing(config: ModelConfig, missing: Sequence[str]) -> None:
    new = _first_report(missing)
    if new:
        log.warning(
            "execution providers not available in this ONNX Runtime; falling back",
            extra={"model": config.name, "version": config.version, "missing": new},
        )


def _report_unusable(config: ModelConfig, unusable: Sequence[str], active: Sequence[str]) -> None:
    new = _first_report(unusable)
    if new:
        log.warning(
            "execution providers offered by this ONNX Runtime failed to initialise (no device, or its "
            "libraries such as CUDA/cuDNN are missing); the session runs on the remaining providers",
            extra={"model": config.name, "version": config.version, "unusable": new, "active": list(active)},
        )
