"""Open Inference Protocol v2 tensor codecs: pure functions from bytes to numpy and back.

Covers the JSON tensor form and the binary tensor data extension (as defined by Triton and used by
``tritonclient``): the request body is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by raw little-endian tensor bytes for each input whose ``parameters`` carry
``binary_data_size``; an output asked for with ``"binary_data": true`` (or every output, with the
request parameter ``binary_data_output``) comes back the same way. BYTES elements on the binary
wire are each a 4-byte little-endian length and the bytes.

Nothing here knows the model: the service checks names, types and shapes against the signature.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from device_agent.errors import InvalidRequestError

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
# Keyed by dtype.str ('<f4', '|u1', ...): a cheap attribute, unlike building a byte-swapped dtype.
_DATATYPE_OF = {
    **{t.newbyteorder("<").str: name for name, t in DTYPES.items() if name != "BYTES"},
    "|O": "BYTES",
}

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    # Declared v2 datatypes, kept so a mismatch is reported in the client's own terms.
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None
    binary_output: bool


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse a v2 infer request (JSON, or JSON header + binary tensors)."""
    header_bytes: bytes | memoryview
    binary: bytes | memoryview
    if header_length is None:
        header_bytes, binary = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes"
            )
        view = memoryview(body)
        header_bytes, binary = view[:header_length], view[header_length:]
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidRequestError("request body must be a JSON object with an 'inputs' list")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequestError("request needs a non-empty 'inputs' list")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("'id' must be a string")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidRequestError("'parameters' must be an object")
    binary_output = parameters.get("binary_data_output") is True

    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        name, datatype, shape = _tensor_header(item, f"inputs[{i}]")
        if name in inputs:
            raise InvalidRequestError(f"input {name!r} is given twice")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequestError(f"input {name!r}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidRequestError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidRequestError(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} binary bytes left)"
                )
            array = _from_binary(binary[offset : offset + size], datatype, shape, name)
            offset += size
        else:
            if "data" not in item:
                raise InvalidRequestError(f"input {name!r} has neither 'data' nor binary_data_size")
            array = _from_json(item["data"], datatype, shape, name)
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise InvalidRequestError(
            f"the body carries {len(binary)} bytes of binary tensor data but the inputs declare {offset}"
        )
    return InferRequest(request_id, inputs, datatypes, _requested_outputs(header), binary_output)


def _tensor_header(item: Any, where: str) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{where} must be an object with name, datatype, shape")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidRequestError(f"{where} needs a 'name' string")
    datatype = item.get("datatype")
    if datatype not in DTYPES:
        raise InvalidRequestError(
            f"input {name!r}: datatype {datatype!r} is not a v2 datatype ({', '.join(DTYPES)})"
        )
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidRequestError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return name, datatype, tuple(shape)


def _requested_outputs(header: dict[str, Any]) -> list[RequestedOutput] | None:
    raw = header.get("outputs")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequestError("'outputs' must be a list")
    requested = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidRequestError(f"outputs[{i}] must be an object with a 'name'")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequestError(f"outputs[{i}]: 'parameters' must be an object")
        if "classification" in params:
            raise InvalidRequestError("the classification extension is not supported; ask for the tensor")
        requested.append(RequestedOutput(item["name"], params.get("binary_data") is True))
    return requested


def _count(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    dtype = DTYPES[datatype]
    try:
        if datatype == "BYTES":
            array = np.array(data, dtype=object)
            if any(not isinstance(v, str) for v in array.flat):
                raise ValueError("BYTES elements must be strings")
        elif datatype == "BOOL":
            array = np.array(data)
            if array.dtype != np.bool_ and array.size:
                raise ValueError("BOOL elements must be true or false")
            array = array.astype(np.bool_)
        else:
            array = np.array(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequestError(f"input {name!r}: data does not fit datatype {datatype}: {exc}") from None
    if array.size != _count(shape):
        raise InvalidRequestError(
            f"input {name!r}: shape {list(shape)} needs {_count(shape)} elements, data has {array.size}"
        )
    return array.reshape(shape)


def _from_binary(raw: memoryview | bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = _count(shape)
    if datatype == "BYTES":
        return _bytes_elements(raw, shape, count, name)
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequestError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _bytes_elements(raw: memoryview | bytes, shape: tuple[int, ...], count: int, name: str) -> np.ndarray:
    values: list[str] = []
    view = memoryview(raw)
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise InvalidRequestError(f"input {name!r}: truncated BYTES element length")
        (length,) = _U32.unpack_from(view, pos)
        pos += 4
        if pos + length > len(view):
            raise InvalidRequestError(f"input {name!r}: BYTES element runs past binary_data_size")
        try:
            values.append(bytes(view[pos : pos + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequestError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
        pos += length
    if len(values) != count:
        raise InvalidRequestError(
            f"input {name!r}: shape {list(shape)} needs {count} BYTES elements, binary data has {len(values)}"
        )
    return np.array(values, dtype=object).reshape(shape)


def datatype_of(array: np.ndarray) -> str:
    datatype = _DATATYPE_OF.get(array.dtype.str)
    if datatype is not None:
        return datatype
    if array.dtype.kind in "USO":
        return "BYTES"
    datatype = _DATATYPE_OF.get(array.dtype.newbyteorder("<").str)
    if datatype is None:
        raise InvalidRequestError(f"cannot encode an output of numpy type {array.dtype}")
    return datatype


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Build the v2 response; returns ``(body, header_length)`` where header_length is set
    only when some output travels as binary data after the JSON header."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [_text(v) for v in array.flat]
        else:
            # orjson writes contiguous numpy arrays natively (float32 as its shortest form).
            entry["data"] = np.ascontiguousarray(array).reshape(-1)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = entries
    header = orjson.dumps(response, option=_JSON_OPTIONS)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.flat:
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def dumps(value: Any) -> bytes:
    """JSON for every other response (metadata, errors, /score), numpy-aware."""
    return orjson.dumps(value, option=_JSON_OPTIONS)
