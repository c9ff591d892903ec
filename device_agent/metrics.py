"""Per-model counters and histograms, rendered as Prometheus text (exposition format 0.0.4).

Recording is a few integer updates on the event loop thread (no locks needed there); the health
side reads percentiles from a bounded window of recent latencies.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from device_agent.host import ModelStats

# Seconds; dense below 1 ms because tiny models answer in tens of microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
WINDOW = 2048  # recent latencies kept for percentiles


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


@dataclass
class ModelMetrics:
    name: str
    version: str
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    in_flight: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def begin(self) -> None:
        """A request reached this model version; every request counts, answered or failed, so
        ``errors / requests`` is the failure rate that health and automatic rollback judge."""
        self.requests += 1
        self.in_flight += 1

    def observe(self, seconds: float) -> None:
        """The latency of an answered request."""
        self.latency.observe(seconds)
        self.recent.append(seconds)

    def stats(self) -> ModelStats:
        window = sorted(self.recent)

        def pct(q: float) -> float | None:
            if not window:
                return None
            return window[min(len(window) - 1, int(q * len(window)))] * 1e3

        return ModelStats(
            name=self.name,
            version=self.version,
            requests=self.requests,
            errors=self.errors,
            client_errors=self.client_errors,
            latency_ms_p50=pct(0.50),
            latency_ms_p95=pct(0.95),
            latency_ms_p99=pct(0.99),
            queue_depth=self.in_flight,
            extra={"batches": self.batch_size.count},
        )


class MetricsRegistry:
    """Metrics per (model, version), kept across reloads so Prometheus counters stay monotonic."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self.http_errors = 0  # requests refused before reaching a model (auth, routing, size)

    def model(self, name: str, version: str) -> ModelMetrics:
        key = (name, version)
        metrics = self._models.get(key)
        if metrics is None:
            metrics = self._models[key] = ModelMetrics(name, version)
        return metrics

    def all(self) -> list[ModelMetrics]:
        return list(self._models.values())

    def render(self, served: set[tuple[str, str]]) -> bytes:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        models = sorted(self._models.values(), key=lambda m: (m.name, m.version))
        family(
            "edge_agent_requests_total",
            "counter",
            "Inference requests that reached a model version, answered or failed.",
        )
        for m in models:
            lines.append(f"edge_agent_requests_total{{{_labels(m)}}} {m.requests}")
        family("edge_agent_errors_total", "counter", "Requests that failed inside the model (5xx).")
        for m in models:
            lines.append(f"edge_agent_errors_total{{{_labels(m)}}} {m.errors}")
        family("edge_agent_client_errors_total", "counter", "Requests refused as invalid (4xx).")
        for m in models:
            lines.append(f"edge_agent_client_errors_total{{{_labels(m)}}} {m.client_errors}")
        family("edge_agent_queue_depth", "gauge", "Requests waiting or running, by model version.")
        for m in models:
            lines.append(f"edge_agent_queue_depth{{{_labels(m)}}} {m.in_flight}")
        family("edge_agent_model_loaded", "gauge", "1 while the model version is being served.")
        for m in models:
            lines.append(f"edge_agent_model_loaded{{{_labels(m)}}} {int((m.name, m.version) in served)}")
        family("edge_agent_request_duration_seconds", "histogram", "Inference latency inside the agent.")
        for m in models:
            _histogram(lines, "edge_agent_request_duration_seconds", _labels(m), m.latency)
        family("edge_agent_batch_size", "histogram", "Rows per ONNX Runtime call under dynamic batching.")
        for m in models:
            if m.batch_size.count:
                _histogram(lines, "edge_agent_batch_size", _labels(m), m.batch_size)
        family("edge_agent_http_rejected_total", "counter", "Requests refused before reaching a model.")
        lines.append(f"edge_agent_http_rejected_total {self.http_errors}")
        return ("\n".join(lines) + "\n").encode()


def _labels(m: ModelMetrics) -> str:
    return f'model="{_escape(m.name)}",version="{_escape(m.version)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram(lines: list[str], name: str, labels: str, hist: Histogram) -> None:
    cumulative = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        cumulative += count
        lines.append(f'{name}_bucket{{{labels},le="{bound:g}"}} {cumulative}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {hist.count}')
    lines.append(f"{name}_sum{{{labels}}} {hist.total:.6f}")
    lines.append(f"{name}_count{{{labels}}} {hist.count}")
