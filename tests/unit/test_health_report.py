from __future__ import annotations

import json
from pathlib import Path

from device_agent.config import HealthThresholds
from device_agent.health import COMPACT_LIMIT_BYTES, HealthCollector, compact_summary, evaluate
from device_agent.host import ModelStats, ServedModel
from device_agent.outbox import OutboxStats


def _served(name: str = "mlp", version: str = "1", ready: bool = True) -> ServedModel:
    return ServedModel(name, version, None, ("CPUExecutionProvider",), ("CUDAExecutionProvider",), ready, 0.0)


def _stats(requests: int, errors: int, name: str = "mlp", version: str = "1") -> ModelStats:
    return ModelStats(name, version, requests, errors, 0, 1.0, 2.0, 3.0)


def test_full_report_has_every_documented_section(tmp_path: Path) -> None:
    collector = HealthCollector("dev-1", tmp_path / "not-yet", HealthThresholds())
    outbox = OutboxStats(depth=3, bytes=30, dropped={"count": 0, "bytes": 0, "age": 0}, oldest_age_s=1.0)
    report = collector.collect([_served()], [_stats(10, 0)], outbox, seq=7)
    assert report["device_id"] == "dev-1" and report["seq"] == 7 and report["at"].endswith("Z")
    system = report["system"]
    assert len(system["cpu_percent_per_core"]) == system["cpu_count"] >= 1
    assert len(system["load"]) == 3 and 0 <= system["memory"]["percent"] <= 100
    assert system["disk"]["path"] == str(tmp_path / "not-yet") and system["disk"]["total"] > 0
    assert "bytes_sent" in system["network"] and isinstance(system["temperatures"], dict)
    assert report["process"]["rss"] > 0 and report["process"]["threads"] >= 1
    assert report["process"]["open_files"] > 0
    (model,) = report["models"]
    assert model["providers"] == ["CPUExecutionProvider"] and model["missing_providers"] == [
        "CUDAExecutionProvider"
    ]
    assert model["latency_ms"] == {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    assert report["outbox"]["depth"] == 3 and report["agent"]["version"]
    json.dumps(report)  # serialisable as is


def test_error_rate_is_per_interval(tmp_path: Path) -> None:
    collector = HealthCollector("d", tmp_path, HealthThresholds(error_rate=0.1, cpu_percent=101))
    first = collector.collect([_served()], [_stats(100, 50)], None)
    assert first["models"][0]["error_rate"] == 0.5 and first["status"] == "failing"
    # 100 more requests, none failed: the old errors no longer count against the model.
    second = collector.collect([_served()], [_stats(200, 50)], None)
    assert second["models"][0]["error_rate"] == 0.0


def test_evaluate_thresholds() -> None:
    thresholds = HealthThresholds(cpu_percent=50, memory_percent=50, disk_percent=50, error_rate=0.1)
    calm = {"system": {"cpu_percent": 10, "memory": {"percent": 10}, "disk": {"percent": 10}}, "models": []}
    assert evaluate(calm, thresholds) == ("healthy", [])
    busy = {"system": {"cpu_percent": 60, "memory": {"percent": 10}, "disk": {"percent": 70}}}
    status, reasons = evaluate(busy, thresholds)
    assert status == "degraded" and len(reasons) == 2 and "cpu 60%" in reasons[0]
    broken = {**calm, "models": [{"name": "m", "version": "1", "ready": False, "error_rate": 0.0}]}
    assert evaluate(broken, thresholds) == ("failing", ["model m:1 is not ready"])
    dropping = {**calm, "outbox": {"dropped": 4}}
    assert evaluate(dropping, thresholds) == ("degraded", ["outbox dropped 4 message(s)"])


def test_compact_summary_stays_under_the_twin_limit(tmp_path: Path) -> None:
    collector = HealthCollector("d", tmp_path, HealthThresholds(error_rate=0.0))
    served = [_served(f"model-{i:03d}-with-a-long-name") for i in range(200)]
    stats = [_stats(10, 1, name=m.name) for m in served]
    report = collector.collect(served, stats, None, seq=5)
    assert len(json.dumps(report)) > COMPACT_LIMIT_BYTES
    summary = compact_summary(report)
    assert len(json.dumps(summary, separators=(",", ":")).encode()) <= COMPACT_LIMIT_BYTES
    assert summary["status"] == "failing" and summary["seq"] == 5
    small = compact_summary(collector.collect(served[:2], stats[:2], None))
    assert set(small["models"]) == {"model-000-with-a-long-name:1", "model-001-with-a-long-name:1"}
