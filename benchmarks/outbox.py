"""Store-and-forward under outages, against a real Mosquitto.

1. replay: N health-sized messages (default 10 000) wait in the outbox, as after an outage;
   the hub side then connects and drains it. Reported: messages/s until the last broker ack, and
   until a subscriber has them all (gap-free by seq).
2. outage (``--outage-s``, default 60; 0 skips): the real `edge-agent run` reports health every
   ``--interval`` s through a relay that is cut while the broker is stopped for the outage; then
   both come back. Reported: what queued, how fast the agent reconnected and drained, and whether
   the subscriber saw every seq.

Run: `.venv/bin/python benchmarks/outbox.py [--messages 10000] [--outage-s 60] [--interval 0.5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_agent.config import parse_config
from device_agent.hub.mqtt_transport import MqttTransport
from device_agent.hub.sender import OutboxSender
from device_agent.outbox import Outbox
from tests import onnx_models
from tests.agent_process import start_agent
from tests.brokers import TcpProxy, start_mosquitto
from tests.mqtt_consumer import Consumer

DEVICE = "bench"
TOPIC = f"edgekit/{DEVICE}/health"


def replay(folder: Path, messages: int) -> None:
    broker = start_mosquitto(folder / "broker")
    consumer = Consumer(broker, [TOPIC], client_id="replay-checker")
    outbox = Outbox(folder / "replay.sqlite")
    filler = {"system": {"cpu_percent_per_core": [1.0] * 16, "note": "x" * 1200}}
    for _ in range(messages):
        outbox.put_sequenced("health", lambda seq: json.dumps({"seq": seq, **filler}).encode())
    size = outbox.stats().bytes
    config = parse_config({"hub": {"transport": "mqtt", "mqtt": {"url": broker.url}}}).hub.mqtt

    async def drain() -> tuple[float, float]:
        transport = MqttTransport(config, DEVICE)
        sender = OutboxSender(outbox, transport)
        await transport.start()
        await transport.connected.wait()
        started = time.perf_counter()
        task = asyncio.create_task(sender.run(), name="hub-sender")
        drained = await sender.drain(timeout=600)
        acked = time.perf_counter() - started
        while len(consumer.messages) < messages:
            await asyncio.sleep(0.01)
        received = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()
        assert drained
        return acked, received

    acked, received = asyncio.run(drain())
    seqs = [json.loads(m.payload)["seq"] for m in consumer.messages]
    in_order = seqs == list(range(1, messages + 1))
    print(f"replay: {messages} messages ({size / 1e6:.1f} MB) waiting in the outbox")
    print(f"  all acked by the broker in {acked:.2f} s: {messages / acked:,.0f} messages/s")
    print(f"  all received by a subscriber in {received:.2f} s: {messages / received:,.0f} messages/s")
    print(f"  subscriber saw seq 1..{messages} in order, no gap, no duplicate: {in_order}")
    consumer.close()
    outbox.close()
    broker.close()


def outage(folder: Path, outage_s: float, interval: float) -> None:
    model = onnx_models.save(onnx_models.mlp(), folder / "m.onnx")
    broker = start_mosquitto(folder / "outage-broker")
    consumer = Consumer(broker, [TOPIC], client_id="outage-checker", persistent=True)
    proxy = TcpProxy(broker.host, broker.port)
    agent = start_agent(
        [
            "--model",
            str(model),
            "--mqtt",
            proxy.url,
            "--device-id",
            DEVICE,
            "--health-interval",
            str(interval),
            "--data-dir",
            str(folder / "agent"),
        ]
    )
    try:
        consumer.wait_for(lambda ms: len(ms) >= 3, timeout=30)
        before = len(consumer.messages)
        proxy.cut()
        consumer.pause()
        broker.stop()
        cut_at = time.monotonic()
        print(f"outage: broker gone for {outage_s:g} s, agent reporting every {interval:g} s")
        time.sleep(outage_s)
        broker.start()
        consumer.resume()
        proxy.restore()
        back_at = time.monotonic()
        expected = before + int(outage_s / interval)
        consumer.wait_for(lambda ms: len({json.loads(m.payload)["seq"] for m in ms}) >= expected, timeout=120)
        caught_up = time.monotonic() - back_at
        rss = json.loads(consumer.messages[-1].payload)["process"]["rss"]
    finally:
        agent.stop()
        proxy.close()
    time.sleep(1.0)
    seqs = [json.loads(m.payload)["seq"] for m in consumer.messages]
    unique = list(dict.fromkeys(seqs))
    reconnects = [line for line in agent.log_text().splitlines() if "connected to MQTT broker" in line]
    print(f"  reports queued during the outage: ~{int((back_at - cut_at) / interval)}")
    print(
        f"  caught up (subscriber has every report of the outage) {caught_up:.2f} s after the broker returned"
    )
    gap_free = unique == list(range(1, max(seqs) + 1))
    print(f"  seq 1..{max(seqs)} gap-free: {gap_free}, duplicates: {len(seqs) - len(unique)}")
    print(f"  agent RSS at the end: {rss / 1e6:.0f} MB; connection log lines: {len(reconnects)}")
    consumer.close()
    broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        replay(Path(folder), args.messages)
        if args.outage_s > 0:
            outage(Path(folder), args.outage_s, args.interval)


if __name__ == "__main__":
    main()
