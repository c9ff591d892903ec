"""Hot-swap latency of the real agent: desired state published -> `applied` reported, under load.

Each round publishes a new revision with another model version (a download from a local HTTP
server, sha256 check, ONNX Runtime load and warm-up, atomic swap) while threads keep sending
inference requests; it reports the latency per round and the failed requests (expected: 0).
Run: `.venv/bin/python benchmarks/swap.py [--rounds 5] [--hidden 512]`.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import onnx_models
from tests.agent_process import start_agent
from tests.brokers import start_mosquitto
from tests.file_server import serve_folder
from tests.integration.test_hub_agent import Load, _wait_status
from tests.mqtt_consumer import Consumer

DEVICE = "dev-a"  # the device id the test helpers watch
P = f"edgekit/{DEVICE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=512, help="MLP hidden width (model size)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        served = folder / "served"
        served.mkdir()
        digests = {}
        for version in range(2, args.rounds + 2):
            data = onnx_models.mlp(hidden=args.hidden, seed=version)
            (served / f"v{version}.onnx").write_bytes(data)
            digests[version] = hashlib.sha256(data).hexdigest()
        first = onnx_models.save(onnx_models.mlp(hidden=args.hidden, seed=1), folder / "v1.onnx")
        with start_mosquitto(folder / "broker") as broker, serve_folder(served) as base:
            consumer = Consumer(broker, [f"{P}/#"])
            agent = start_agent(
                [
                    "--model",
                    str(first),
                    "--name",
                    "mlp",
                    "--mqtt",
                    broker.url,
                    "--device-id",
                    DEVICE,
                    "--data-dir",
                    str(folder / "data"),
                ]
            )
            try:
                load = Load(agent.url)
                latencies = []
                for revision, version in enumerate(range(2, args.rounds + 2), start=1):
                    model = {
                        "name": "mlp",
                        "version": str(version),
                        "url": f"{base}/v{version}.onnx",
                        "sha256": digests[version],
                    }
                    started = time.perf_counter()
                    consumer.publish(
                        f"{P}/state/desired",
                        {"edgekit": {"revision": revision, "models": [model]}},
                        retain=True,
                    )
                    state = _wait_status(consumer, revision)
                    latencies.append(time.perf_counter() - started)
                    assert state["status"] == "applied", state
                    time.sleep(0.3)
                load.stop()
            finally:
                agent.stop()
                consumer.close()
    size = len(onnx_models.mlp(hidden=args.hidden)) / 1e6
    print(f"model: MLP 64-{args.hidden}-10 ({size:.2f} MB), {args.rounds} swaps under HTTP load")
    print(
        "swap latency (desired published -> applied reported): "
        + ", ".join(f"{x * 1000:.0f}" for x in latencies)
        + f" ms; median {statistics.median(latencies) * 1000:.0f} ms"
    )
    print(
        f"requests during the swaps: {load.ok} ok, {len(load.failures)} failed; versions seen: "
        f"{sorted(load.versions, key=int)}"
    )


if __name__ == "__main__":
    main()
