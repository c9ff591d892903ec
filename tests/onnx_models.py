"""Real ONNX models for the tests, built with the `onnx` helper API (nothing is downloaded).

Every factory returns the serialized model bytes; `save(...)` writes them to a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(graph: onnx.GraphProto, opset: int = OPSET) -> bytes:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgekit-tests"
    )
    # ONNX Runtime 1.17+ reads IR 9 and older; pin it so any installed runtime loads the file.
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def save(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mlp(inputs: int = 64, hidden: int = 128, outputs: int = 10, seed: int = 0, batch: str = "batch") -> bytes:
    """A two-layer perceptron `input[batch, inputs] -> output[batch, outputs]` (FP32)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((inputs, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, outputs)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b2")
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, inputs])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, outputs])],
        initializer=[w1, b1, w2, b2],
    )
    return _model(graph)


def small_cnn(channels: int = 8, classes: int = 10, seed: int = 0, size: int | str = 224) -> bytes:
    """Conv-ReLU-Conv-ReLU-GlobalAvgPool-Gemm on `image[batch, 3, H, W]` (FP32)."""
    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.1, "c1"),
        numpy_helper.from_array(
            rng.standard_normal((channels * 2, channels, 3, 3)).astype(np.float32) * 0.1, "c2"
        ),
        numpy_helper.from_array(rng.standard_normal((channels * 2, classes)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "c1"], ["x1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["x1"], ["x2"]),
        helper.make_node("Conv", ["x2", "c2"], ["x3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["x3"], ["x4"]),
        helper.make_node("GlobalAveragePool", ["x4"], ["x5"]),
        helper.make_node("Flatten", ["x5"], ["x6"]),
        helper.make_node("MatMul", ["x6", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=init,
    )
    return _model(graph)


def symbolic_spatial() -> bytes:
    """`image[N, 3, height, width]` -> `mask[N, 1, height, width]`: symbolic batch and spatial dims."""
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 1 / 3, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["mask"])],
        "symbolic_spatial",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "height", "width"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, "height", "width"])],
        initializer=[weight],
    )
    return _model(graph)


def integer_ops() -> bytes:
    """`ids: INT64[batch, 4]`, `counts: INT32[batch, 4]` -> `total: INT64`, `flag: BOOL` (same shape)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["counts"], ["counts64"], to=TensorProto.INT64),
            helper.make_node("Add", ["ids", "counts64"], ["total"]),
            helper.make_node("Greater", ["ids", "counts64"], ["flag"]),
        ],
        "integer_ops",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4]),
            helper.make_tensor_value_info("counts", TensorProto.INT32, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 4]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch", 4]),
        ],
    )
    return _model(graph)


def scalar_scale() -> bytes:
    """`x: FP32[3]` times a scalar input `scale: FP32[]` -> `y: FP32[3]`, plus `scale_out: FP32[]`."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["y"]),
            helper.make_node("Identity", ["scale"], ["scale_out"]),
        ],
        "scalar_scale",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("scale_out", TensorProto.FLOAT, []),
        ],
    )
    return _model(graph)


def odd_names() -> bytes:
    """Tensor names with '/' and ':' (as exported by TensorFlow and PyTorch), FP16 and UINT8 types."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["serving_default/input:0"], ["model/output:0"]),
            helper.make_node("Identity", ["pixels:0"], ["pixels/out"]),
        ],
        "odd_names",
        [
            helper.make_tensor_value_info("serving_default/input:0", TensorProto.FLOAT16, [None, 2]),
            helper.make_tensor_value_info("pixels:0", TensorProto.UINT8, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("model/output:0", TensorProto.FLOAT16, [None, 2]),
            helper.make_tensor_value_info("pixels/out", TensorProto.UINT8, [1, 4]),
        ],
    )
    return _model(graph)


def fixed_batch_last() -> bytes:
    """`x: FP32[4, batch]`: the dynamic dimension is not the first, so it must not be batched."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed_batch_last",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, "batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, "batch"])],
    )
    return _model(graph)


def padded(size_bytes: int, seed: int = 0) -> bytes:
    """An MLP-shaped model carrying about `size_bytes` of weights (for size benchmarks)."""
    columns = max(1, size_bytes // (4 * 256))
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((256, columns)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "padded",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", columns])],
        initializer=[weight],
    )
    return _model(graph)
