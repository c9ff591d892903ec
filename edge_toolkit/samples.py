"""Small sample ONNX models made on the spot, for trying edgekit without a model of your own."""

from __future__ import annotations

from pathlib import Path

from edge_toolkit.errors import MissingExtraError


def write_sample_mlp(
    path: Path, inputs: int = 64, hidden: int = 128, outputs: int = 10, seed: int = 0
) -> Path:
    """A two-layer perceptron `input: FP32[batch, inputs]` -> `output: FP32[batch, outputs]`."""
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("onnx", "workspace") from exc

    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((inputs, hidden)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(hidden, dtype=np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((hidden, outputs)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(outputs, dtype=np.float32), "b2"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
            helper.make_node("Add", ["h3", "b2"], ["output"]),
        ],
        "sample_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs])],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgekit-sample"
    )
    model.ir_version = 9  # readable by every ONNX Runtime from 1.17 on
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
