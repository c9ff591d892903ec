"""The v2 tensor codecs: round trips (property-based) and every refusal."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from device_agent.codecs import DTYPES, decode_request, encode_response
from device_agent.errors import InvalidRequestError

NUMERIC = [name for name in DTYPES if name not in ("BYTES",)]


def _shapes() -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(NUMERIC))
    dtype = DTYPES[datatype]
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    array = draw(hnp.arrays(dtype, _shapes(), elements=elements))
    return datatype, array


def _as_request(datatype: str, array: np.ndarray, binary: bool) -> tuple[bytes, int | None]:
    entry: dict[str, object] = {"name": "t", "datatype": datatype, "shape": list(array.shape)}
    if binary:
        entry["parameters"] = {"binary_data_size": array.nbytes}
        header = json.dumps({"inputs": [entry]}).encode()
        return header + array.tobytes(), len(header)
    entry["data"] = array.ravel().tolist()
    return json.dumps({"inputs": [entry]}).encode(), None


@settings(max_examples=150, deadline=None)
@given(tensors(), st.booleans())
def test_request_round_trip(tensor: tuple[str, np.ndarray], binary: bool) -> None:
    datatype, array = tensor
    body, header_length = _as_request(datatype, array, binary)
    request = decode_request(body, header_length)
    decoded = request.inputs["t"]
    assert request.datatypes["t"] == datatype
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=150, deadline=None)
@given(tensors(), st.booleans())
def test_response_round_trip(tensor: tuple[str, np.ndarray], binary: bool) -> None:
    datatype, array = tensor
    body, header_length = encode_response("m", "3", "abc", [("out", array, binary)])
    header = json.loads(body if header_length is None else body[:header_length])
    assert header["model_name"] == "m" and header["model_version"] == "3" and header["id"] == "abc"
    (entry,) = header["outputs"]
    assert entry["datatype"] == datatype and entry["shape"] == list(array.shape)
    if binary:
        assert header_length is not None
        assert entry["parameters"]["binary_data_size"] == array.nbytes
        got = np.frombuffer(body[header_length:], dtype=DTYPES[datatype]).reshape(array.shape)
    else:
        assert header_length is None
        got = np.array(entry["data"], dtype=DTYPES[datatype]).reshape(array.shape)
    np.testing.assert_array_equal(got, array)


def test_bytes_tensors_round_trip_in_both_forms() -> None:
    words = np.array(["hi", "", "grüße"], dtype=object)
    body, length = encode_response("m", "1", None, [("w", words, True)])
    assert length is not None
    blob = body[length:]
    assert blob == b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "w",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    ).encode()
    assert decode_request(header + blob, len(header)).inputs["w"].tolist() == ["hi", "", "grüße"]
    text_body, _ = encode_response("m", "1", None, [("w", words, False)])
    assert json.loads(text_body)["outputs"][0]["data"] == ["hi", "", "grüße"]
    as_json = json.dumps(
        {"inputs": [{"name": "w", "datatype": "BYTES", "shape": [1, 3], "data": ["a", "b", "c"]}]}
    )
    assert decode_request(as_json.encode()).inputs["w"].shape == (1, 3)


def test_requested_outputs_and_binary_default() -> None:
    body = json.dumps(
        {
            "inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    request = decode_request(body)
    assert request.binary_output is True
    assert [(o.name, o.binary) for o in request.outputs or []] == [("a", True), ("b", False)]


def _one(**fields: object) -> bytes:
    entry = {"name": "t", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    entry.update(fields)
    return json.dumps({"inputs": [entry]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "needle"),
    [
        (b"{", None, "not valid JSON"),
        (b"[]", None, "JSON object"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (b'{"inputs": [1]}', None, "must be an object"),
        (_one(name=5), None, "'name'"),
        (_one(datatype="FLOAT32"), None, "not a v2 datatype"),
        (_one(shape=[2, -1]), None, "non-negative"),
        (_one(shape="2"), None, "non-negative"),
        (_one(data=[1.0]), None, "needs 2 elements"),
        (_one(data=[[1.0], [2.0, 3.0]]), None, "does not fit"),
        (_one(data=["x", "y"]), None, "does not fit"),
        (_one(datatype="BOOL", data=[1, 0]), None, "true or false"),
        (_one(datatype="BYTES", data=[1, 2]), None, "strings"),
        (json.dumps({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1]}]}).encode(), None, "neither"),
        (json.dumps({"id": 5, "inputs": [{"name": "t"}]}).encode(), None, "'id'"),
        (b'{"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]},'
         b'{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}]}', None, "twice"),
        (_one(), 10_000, "Inference-Header-Content-Length"),
        (_one(parameters={"binary_data_size": -1}), None, "non-negative"),
        (_one(parameters={"binary_data_size": 8}), None, "past the end"),
        (_one() + b"\0" * 4, len(_one()), "declare 0"),
        (json.dumps({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}],
                     "outputs": "x"}).encode(),
         None, "'outputs'"),
        (json.dumps({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}],
                     "outputs": [{"name": "o", "parameters": {"classification": 3}}]}).encode(),
         None, "classification"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason(body: bytes, header_length: int | None, needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle):
        decode_request(body, header_length)


def test_binary_size_must_match_shape() -> None:
    x = np.zeros(3, dtype=np.float32)
    header = json.dumps(
        {"inputs": [{"name": "t", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 12}}]}
    ).encode()
    with pytest.raises(InvalidRequestError, match="needs 8 bytes"):
        decode_request(header + x.tobytes(), len(header))


def test_truncated_bytes_elements_are_refused() -> None:
    blob = struct.pack("<I", 10) + b"abc"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    ).encode()
    with pytest.raises(InvalidRequestError, match="runs past"):
        decode_request(header + blob, len(header))
