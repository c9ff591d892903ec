"""Read a model's signature (inputs, outputs, opset, producer) from an ONNX file.

The only module of the registry that imports `onnx`. Element types are reported as Open
Inference Protocol datatypes; every dynamic dimension is -1 in ``shape`` and keeps its
symbolic name (if the file has one) in ``dim_names``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_toolkit.errors import InvalidModelError, MissingExtraError

# ONNX TensorProto element type -> Open Inference Protocol datatype.
ONNX_TO_OIP: dict[int, str] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",  # STRING
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    dim_names: tuple[str | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "dim_names": list(self.dim_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        shape = tuple(int(d) for d in data["shape"])
        return cls(data["name"], data["datatype"], shape, tuple(data.get("dim_names") or [None] * len(shape)))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    producer: str
    ir_version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "opset": self.opset,
            "producer": self.producer,
            "ir_version": self.ir_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            int(data["opset"]),
            str(data["producer"]),
            int(data.get("ir_version", 0)),
        )


def read_signature(path: Path) -> Signature:
    """Parse and check ``path``; raise InvalidModelError if it is not a loadable ONNX model."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("onnx", "workspace") from exc

    if not path.is_file():
        raise InvalidModelError(f"{path}: no such file; check the path")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(
            f"{path} is not an ONNX model or is truncated/corrupt ({_first_line(exc)}); "
            "export it again with onnx.save or torch.onnx.export"
        ) from exc
    except OSError as exc:
        raise InvalidModelError(f"cannot read {path}: {exc.strerror}") from exc
    if model.ir_version <= 0 or not model.opset_import or not model.graph.output:
        raise InvalidModelError(
            f"{path} is not an ONNX model (no IR version, opset or graph outputs); "
            "export it again with onnx.save or torch.onnx.export"
        )
    try:
        # A path (not the loaded proto) lets the checker handle models over 2 GB too.
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from exc

    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v, path) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v, path) for v in model.graph.output)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return Signature(inputs, outputs, opset, model.producer_name or "", model.ir_version)


def _spec(value_info: Any, path: Path) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        raise InvalidModelError(
            f"{path}: '{value_info.name}' is not a tensor (sequences and maps are not supported)"
        )
    datatype = ONNX_TO_OIP.get(tensor_type.elem_type)
    if datatype is None:
        raise InvalidModelError(
            f"{path}: tensor '{value_info.name}' has element type {tensor_type.elem_type}, "
            "which the Open Inference Protocol cannot carry"
        )
    shape: list[int] = []
    names: list[str | None] = []
    if tensor_type.HasField("shape"):
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
                names.append(None)
            else:
                shape.append(-1)
                names.append(dim.dim_param or None)
    return TensorSpec(value_info.name, datatype, tuple(shape), tuple(names))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
