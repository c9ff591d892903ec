"""Health reports: what the device and its models are doing, and a status from thresholds.

Collection (``psutil`` and the model host's counters) lives in :class:`HealthCollector`; judging
(:func:`evaluate`) and shrinking for the twin (:func:`compact_summary`) are pure functions on the
report dict, so they are tested without a machine to measure. The report layout is the "health
report" of ``docs/hub-protocol.md``.

Cost matters: a report is made every few seconds on small devices. Only cheap calls are used
(non-blocking ``cpu_percent`` deltas, ``num_fds`` instead of ``open_files``), and temperatures,
the slowest call, are read once per report at most.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from device_agent import __version__
from device_agent.config import HealthThresholds
from device_agent.host import ModelStats, ServedModel
from device_agent.outbox import OutboxStats

log = logging.getLogger(__name__)

HEALTHY, DEGRADED, FAILING = "healthy", "degraded", "failing"
COMPACT_LIMIT_BYTES = 4096  # IoT Hub limits one twin property to 4 KB


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Previous:
    requests: int
    errors: int


class HealthCollector:
    """Builds full health reports; keeps the previous counters to report per-interval error rates."""

    def __init__(self, device_id: str, data_dir: Path, thresholds: HealthThresholds) -> None:
        self.device_id = device_id
        self.data_dir = data_dir
        self.thresholds = thresholds
        self.started = time.monotonic()
        self._process = psutil.Process(os.getpid())
        self._previous: dict[tuple[str, str], _Previous] = {}
        self._has_temperatures = hasattr(psutil, "sensors_temperatures")
        # Prime the CPU counters: the first non-blocking cpu_percent() call always returns 0.
        psutil.cpu_percent(percpu=True)
        self._process.cpu_percent()

    def collect(
        self,
        served: Sequence[ServedModel],
        stats: Sequence[ModelStats],
        outbox: OutboxStats | None,
        seq: int = 0,
        thresholds: HealthThresholds | None = None,
    ) -> dict[str, Any]:
        """One full report (``seq`` is filled in by the outbox when the report is queued).

        ``thresholds`` overrides the ones given at construction (the hub may have changed them)."""
        report: dict[str, Any] = {
            "device_id": self.device_id,
            "seq": seq,
            "at": utc_now(),
            "status": HEALTHY,
            "reasons": [],
            "system": self._system(),
            "process": self._process_info(),
            "models": self._models(served, stats),
            "outbox": None
            if outbox is None
            else {
                "depth": outbox.depth,
                "bytes": outbox.bytes,
                "dropped": outbox.dropped_total,
                "dropped_by_reason": outbox.dropped,
                "oldest_age_s": outbox.oldest_age_s,
            },
            "agent": {"version": __version__, "uptime_s": round(time.monotonic() - self.started, 3)},
        }
        report["status"], report["reasons"] = evaluate(report, thresholds or self.thresholds)
        return report

    def _system(self) -> dict[str, Any]:
        per_core = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        net = psutil.net_io_counters()
        system: dict[str, Any] = {
            "cpu_percent": round(sum(per_core) / max(1, len(per_core)), 2),
            "cpu_percent_per_core": per_core,
            "cpu_count": len(per_core),
            "load": list(os.getloadavg()),
            "memory": {"total": memory.total, "available": memory.available, "percent": memory.percent},
            "swap": {"total": swap.total, "used": swap.used, "percent": swap.percent},
            "disk": self._disk(),
            "network": None
            if net is None
            else {
                "bytes_sent": net.bytes_sent,
                "bytes_recv": net.bytes_recv,
                "errin": net.errin,
                "errout": net.errout,
                "dropin": net.dropin,
                "dropout": net.dropout,
            },
            "temperatures": self._temperatures(),
        }
        return system

    def _disk(self) -> dict[str, Any] | None:
        # The data folder may not exist yet on a fresh device; measure the nearest existing parent.
        path = self.data_dir
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            usage = psutil.disk_usage(str(path))
        except OSError:
            return None
        return {
            "path": str(self.data_dir),
            "total": usage.total,
            "used": usage.used,
            "percent": usage.percent,
        }

    def _temperatures(self) -> dict[str, float]:
        if not self._has_temperatures:
            return {}
        try:
            sensors = psutil.sensors_temperatures()
        except (OSError, RuntimeError):
            self._has_temperatures = False
            return {}
        if not sensors:
            # No sensors on this machine (containers, VMs): stop asking, it only costs time.
            self._has_temperatures = False
        return {
            f"{chip}/{reading.label or i}": reading.current
            for chip, readings in sensors.items()
            for i, reading in enumerate(readings)
        }

    def _process_info(self) -> dict[str, Any]:
        proc = self._process
        with proc.oneshot():
            return {
                "pid": proc.pid,
                "rss": proc.memory_info().rss,
                "cpu_percent": proc.cpu_percent(),
                "threads": proc.num_threads(),
                "open_files": proc.num_fds() if hasattr(proc, "num_fds") else len(proc.open_files()),
            }

    def _models(self, served: Sequence[ServedModel], stats: Sequence[ModelStats]) -> list[dict[str, Any]]:
        by_key = {(s.name, s.version): s for s in stats}
        models = []
        for model in served:
            key = (model.name, model.version)
            stat = by_key.get(key)
            requests = stat.requests if stat else 0
            errors = stat.errors if stat else 0
            previous = self._previous.get(key, _Previous(0, 0))
            interval_requests = max(0, requests - previous.requests)
            interval_errors = max(0, errors - previous.errors)
            self._previous[key] = _Previous(requests, errors)
            models.append(
                {
                    "name": model.name,
                    "version": model.version,
                    "ready": model.ready,
                    "providers": list(model.providers),
                    "missing_providers": list(model.missing_providers),
                    "requests": requests,
                    "errors": errors,
                    "client_errors": stat.client_errors if stat else 0,
                    "interval_requests": interval_requests,
                    "interval_errors": interval_errors,
                    "error_rate": (interval_errors / interval_requests) if interval_requests else 0.0,
                    "latency_ms": {
                        "p50": stat.latency_ms_p50 if stat else None,
                        "p95": stat.latency_ms_p95 if stat else None,
                        "p99": stat.latency_ms_p99 if stat else None,
                    },
                    "queue_depth": stat.queue_depth if stat else 0,
                }
            )
        return models


def evaluate(report: dict[str, Any], thresholds: HealthThresholds) -> tuple[str, list[str]]:
    """The status of a report and why: ``failing`` when a model cannot serve or errors past the
    threshold; ``degraded`` when the machine runs past a resource threshold or drops telemetry."""
    failing: list[str] = []
    degraded: list[str] = []
    system = report.get("system") or {}
    cpu = system.get("cpu_percent")
    if cpu is not None and cpu > thresholds.cpu_percent:
        degraded.append(f"cpu {cpu:.0f}% > {thresholds.cpu_percent:.0f}%")
    memory = (system.get("memory") or {}).get("percent")
    if memory is not None and memory > thresholds.memory_percent:
        degraded.append(f"memory {memory:.0f}% > {thresholds.memory_percent:.0f}%")
    disk = (system.get("disk") or {}).get("percent")
    if disk is not None and disk > thresholds.disk_percent:
        degraded.append(f"disk {disk:.0f}% > {thresholds.disk_percent:.0f}%")
    for model in report.get("models") or []:
        label = f"{model['name']}:{model['version']}"
        if not model.get("ready", False):
            failing.append(f"model {label} is not ready")
        rate = model.get("error_rate") or 0.0
        if rate > thresholds.error_rate:
            failing.append(f"model {label} error rate {rate:.1%} > {thresholds.error_rate:.1%}")
    outbox = report.get("outbox") or {}
    if outbox.get("dropped"):
        degraded.append(f"outbox dropped {outbox['dropped']} message(s)")
    if failing:
        return FAILING, failing + degraded
    if degraded:
        return DEGRADED, degraded
    return HEALTHY, []


def compact_summary(report: dict[str, Any], limit: int = COMPACT_LIMIT_BYTES) -> dict[str, Any]:
    """The few fields a fleet view needs, as twin reported property ``health`` (< ``limit`` bytes)."""
    system = report.get("system") or {}
    summary: dict[str, Any] = {
        "status": report.get("status"),
        "reasons": list(report.get("reasons") or []),
        "cpu_percent": system.get("cpu_percent"),
        "memory_percent": (system.get("memory") or {}).get("percent"),
        "disk_percent": (system.get("disk") or {}).get("percent"),
        "seq": report.get("seq"),
        "at": report.get("at"),
        "uptime_s": (report.get("agent") or {}).get("uptime_s"),
        "outbox_depth": (report.get("outbox") or {}).get("depth"),
        "models": {
            f"{m['name']}:{m['version']}": {"requests": m["requests"], "errors": m["errors"]}
            for m in report.get("models") or []
        },
    }
    # Shed detail until it fits: reasons first (the status stays), then per-model counters.
    while _size(summary) > limit and summary["reasons"]:
        summary["reasons"].pop()
    if _size(summary) > limit:
        summary["models"] = {"count": len(report.get("models") or [])}
    return summary


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())
