"""Provider choice, the batcher, metrics text and flag-to-config folding, without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from device_agent.batching import Batcher
from device_agent.cli import build_parser, config_from_args
from device_agent.engine import choose_providers
from device_agent.errors import ConfigError, InferenceRuntimeError
from device_agent.metrics import MetricsRegistry


def test_providers_follow_preference_with_cpu_last() -> None:
    available = ["CUDAExecutionProvider", "CPUExecutionProvider", "OpenVINOExecutionProvider"]
    effective, missing = choose_providers(
        [
            "TensorrtExecutionProvider",
            "CPUExecutionProvider",
            "OpenVINOExecutionProvider",
            "CUDAExecutionProvider",
        ],
        available,
    )
    assert effective == ["OpenVINOExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert missing == ["TensorrtExecutionProvider"]
    assert choose_providers(["VitisAIExecutionProvider"], ["CPUExecutionProvider"]) == (
        ["CPUExecutionProvider"],
        ["VitisAIExecutionProvider"],
    )


class RecordingModel:
    """A real callable standing in for a session: y = 2x, and it records each call's rows."""

    def __init__(self, fail: bool = False, drop_rows: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.drop_rows = drop_rows

    def __call__(self, feeds: dict[str, np.ndarray], names: Sequence[str] | None) -> list[np.ndarray]:
        x = feeds["x"]
        self.calls.append(x.shape[0])
        if self.fail:
            raise InferenceRuntimeError("model exploded")
        if self.drop_rows:
            return [x[:1] * 2]
        return [x * 2, x.sum(axis=1)]


def run_batch(model: RecordingModel, arrays: list[np.ndarray], max_rows: int = 8) -> list[object]:
    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            seen: list[int] = []
            batcher = Batcher(
                run=model, executor=pool, max_rows=max_rows, max_delay_s=0.05, on_batch=seen.append
            )
            results = await asyncio.gather(
                *(batcher.submit({"x": a}) for a in arrays), return_exceptions=True
            )
            await batcher.close()
            assert sum(seen) == sum(a.shape[0] for a in arrays)
            return list(results)

    return asyncio.run(main())


def test_batcher_splits_rows_back_exactly() -> None:
    model = RecordingModel()
    arrays = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(10)]
    results = run_batch(model, arrays, max_rows=8)
    for a, result in zip(arrays, results, strict=True):
        assert isinstance(result, list)
        np.testing.assert_array_equal(result[0], a * 2)
        np.testing.assert_array_equal(result[1], a.sum(axis=1))
    assert max(model.calls) <= 8
    assert len(model.calls) < len(arrays)


def test_batcher_keeps_different_inner_shapes_apart() -> None:
    model = RecordingModel()
    arrays = [np.ones((1, 2), np.float32), np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)]
    results = run_batch(model, arrays)
    for a, result in zip(arrays, results, strict=True):
        assert isinstance(result, list)
        np.testing.assert_array_equal(result[0], a * 2)


def test_batcher_passes_errors_to_every_caller() -> None:
    results = run_batch(RecordingModel(fail=True), [np.ones((1, 2), np.float32)] * 3)
    assert all(isinstance(r, InferenceRuntimeError) for r in results)


def test_batcher_refuses_outputs_without_the_batch_dimension() -> None:
    results = run_batch(RecordingModel(drop_rows=True), [np.ones((1, 2), np.float32)] * 3)
    assert all(isinstance(r, InferenceRuntimeError) and "batch" in str(r) for r in results)


def test_metrics_render_prometheus_text() -> None:
    registry = MetricsRegistry()
    m = registry.model('od"d', "2")
    for seconds in (0.0003, 0.02):
        m.begin()
        m.observe(seconds)
        m.in_flight -= 1
    m.begin()  # a third request, refused as invalid: counted, with no latency
    m.client_errors += 1
    m.in_flight -= 1
    m.batch_size.observe(4)
    text = registry.render({('od"d', "2")}).decode()
    labels = 'model="od\\"d",version="2"'
    assert f"edge_agent_requests_total{{{labels}}} 3" in text
    assert f'edge_agent_request_duration_seconds_bucket{{{labels},le="0.0005"}} 1' in text
    assert f'edge_agent_request_duration_seconds_bucket{{{labels},le="+Inf"}} 2' in text
    assert f"edge_agent_client_errors_total{{{labels}}} 1" in text
    assert f"edge_agent_batch_size_sum{{{labels}}} 4.000000" in text
    assert f"edge_agent_model_loaded{{{labels}}} 1" in text
    stats = m.stats()
    assert stats.requests == 3 and stats.client_errors == 1
    assert stats.latency_ms_p50 is not None and stats.latency_ms_p99 == pytest.approx(20.0)


def test_flags_fold_into_a_validated_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["run", "--model", "a.onnx", "--model", "b/model.onnx", "--name", "alpha", "--version", "7",
         "--port", "0", "--mqtt", "mqtts://broker:8883", "--device-id", "cam-1", "--health-interval", "5",
         "--api-key", "k"]
    )  # fmt: skip
    config = config_from_args(args, environ={"EDGE_AGENT_PORT": "6000"})
    assert [(m.name, m.version) for m in config.models] == [("alpha", "7"), ("model", "1")]
    assert config.models[0].path == str(Path("a.onnx").resolve())
    assert config.server.port == 0  # the flag beats the environment
    assert config.server.api_keys == ("k",)
    assert config.hub.transport == "mqtt" and config.hub.mqtt.url == "mqtts://broker:8883"
    assert config.device_id == "cam-1" and config.health.interval_s == 5.0


def test_config_file_plus_flags(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("models:\n  - {name: m, path: m.onnx}\nserver: {port: 7000}\n")
    args = build_parser().parse_args(["run", "--config", str(tmp_path / "agent.yaml"), "--model", "x.onnx"])
    config = config_from_args(args, environ={"EDGE_AGENT_PORT": "7100"})
    assert [m.name for m in config.models] == ["m", "x"]
    assert config.models[0].path == str(tmp_path / "m.onnx")
    assert config.server.port == 7100


def test_names_without_models_are_an_error() -> None:
    with pytest.raises(ConfigError, match="--name"):
        config_from_args(
            build_parser().parse_args(["run", "--model", "a.onnx", "--name", "a", "--name", "b"]), {}
        )


def test_environment_overrides_port_and_log_level() -> None:
    from device_agent.config import apply_environment, parse_config

    config = parse_config({"server": {"port": 5001}, "log_level": "info"})
    changed = apply_environment(config, {"EDGE_AGENT_PORT": "8123", "EDGE_AGENT_LOG_LEVEL": "debug"})
    assert (changed.server.port, changed.log_level) == (8123, "debug")
    assert apply_environment(config, {}) == config
    with pytest.raises(ConfigError, match=r"EDGE_AGENT_LOG_LEVEL.*one of debug, info, warning, error"):
        apply_environment(config, {"EDGE_AGENT_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="EDGE_AGENT_PORT"):
        apply_environment(config, {"EDGE_AGENT_PORT": "http"})


def test_health_interval_without_a_hub_reports_to_the_console() -> None:
    plain = config_from_args(build_parser().parse_args(["run", "--model", "a.onnx"]), environ={})
    assert plain.hub.transport == "none"
    asked = config_from_args(
        build_parser().parse_args(["run", "--model", "a.onnx", "--health-interval", "2"]), environ={}
    )
    assert asked.hub.transport == "console" and asked.health.interval_s == 2.0


def _one_op_model(op: str, input_dims: list[str | int | None], output_dims: list[str | int | None]) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    attributes = {"perm": [1, 0]} if op == "Transpose" else {}
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attributes)],
        op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("op", "input_dims", "output_dims", "batchable"),
    [
        ("Identity", ["batch", 2], ["batch", 2], True),  # one named leading dimension throughout
        ("Transpose", ["n", "m"], ["m", "n"], False),  # free leading dims, but not the same one
        ("Identity", [None, 2], [None, 2], False),  # unnamed: cannot be shown to be the batch
        ("Identity", [1, 4], [1, 4], False),  # fixed
    ],
)
def test_batching_needs_one_named_leading_dimension(
    tmp_path: Path,
    op: str,
    input_dims: list[str | int | None],
    output_dims: list[str | int | None],
    batchable: bool,
) -> None:
    from device_agent.config import ModelConfig
    from device_agent.engine import ModelSession
    from tests import onnx_models

    path = onnx_models.save(_one_op_model(op, input_dims, output_dims), tmp_path / "m.onnx")
    session = ModelSession(ModelConfig("m", "1", path=str(path), warmup=False), path)
    assert session.batchable is batchable
