"""What health reporting costs: CPU time per report, as % of one core at a given interval.

One "report" is everything the agent does each interval: psutil collection, per-model stats,
JSON encoding, the durable outbox write (with its seq), and the compact twin summary. The cost is
process CPU time (user + system) over many back-to-back reports, so sleeping is not counted.
Run: `.venv/bin/python benchmarks/health.py [--reports 200] [--interval 5] [--models 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_agent.config import HealthThresholds, ModelConfig
from device_agent.health import HealthCollector, compact_summary
from device_agent.outbox import Outbox
from tests.fake_host import FakeHost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="the health interval to express cost at")
    parser.add_argument("--models", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        host = FakeHost()
        models = []
        for i in range(args.models):
            (data / f"m{i}").write_bytes(b"ok")
            models.append(ModelConfig(f"model-{i}", "1", path=str(data / f"m{i}")))
        asyncio.run(host.apply_models(models))
        collector = HealthCollector("bench", data, HealthThresholds())
        outbox = Outbox(data / "outbox.sqlite")
        sizes, per_report = [], []
        for _ in range(args.reports):
            cpu0 = time.process_time()
            report = collector.collect(host.served_models(), host.stats(), outbox.stats())

            def body(seq: int, report: dict[str, object] = report) -> bytes:
                report["seq"] = seq
                return json.dumps(report, separators=(",", ":")).encode()

            outbox.put_sequenced("health", body)
            summary = compact_summary(report)
            json.dumps(summary)
            per_report.append(time.process_time() - cpu0)
            sizes.append((len(body(0)), len(json.dumps(summary))))
        outbox.close()
    mean = statistics.mean(per_report)
    p95 = sorted(per_report)[int(0.95 * len(per_report)) - 1]
    print(f"reports: {args.reports}, models: {args.models}")
    print(f"CPU per report: mean {mean * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms")
    print(f"cost at a {args.interval:g} s interval: {mean / args.interval * 100:.3f} % of one core")
    print(f"sizes: full report {sizes[-1][0]} bytes, twin summary {sizes[-1][1]} bytes")


if __name__ == "__main__":
    main()
