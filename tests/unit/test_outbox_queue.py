from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from device_agent.outbox import Limits, Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_messages_come_back_in_order_and_leave_only_on_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    ids = [box.put("health", f"m{i}".encode(), {"type": "health"}) for i in range(5)]
    assert [e.body for e in box.peek()] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert box.peek()[0].properties == {"type": "health"}
    assert [e.id for e in box.peek(after_id=ids[2])] == ids[3:]
    box.ack(ids[1])
    box.ack(ids[1])  # a second ack of the same id is harmless
    assert [e.body for e in box.peek()] == [b"m0", b"m2", b"m3", b"m4"]
    assert box.depth == 4
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.depth == 4 and again.stats().bytes == 8


def test_seq_keeps_counting_across_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.put_sequenced("health", lambda s: json.dumps({"seq": s}).encode())[1] for _ in range(3)]
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    _, seq = box.put_sequenced("health", lambda s: json.dumps({"seq": s}).encode())
    assert [*seqs, seq] == [1, 2, 3, 4]
    assert [json.loads(e.body)["seq"] for e in box.peek()] == [1, 2, 3, 4]
    assert box.last_seq("health") == 4 and box.last_seq("other") == 0


def test_count_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", Limits(max_messages=3))
    for i in range(5):
        box.put("health", str(i).encode())
    assert [e.body for e in box.peek()] == [b"2", b"3", b"4"]
    assert box.stats().dropped == {"count": 2, "bytes": 0, "age": 0}


def test_bytes_bound_drops_oldest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", Limits(max_bytes=25))
    for i in range(5):
        box.put("health", bytes([48 + i]) * 10)
    stats = box.stats()
    assert stats.bytes <= 25 and stats.depth == 2
    assert stats.dropped["bytes"] == 3
    assert [e.body[:1] for e in box.peek()] == [b"3", b"4"]


def test_age_bound_expires_old_messages(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", Limits(max_age_s=60), clock=clock)
    box.put("health", b"old")
    clock.now += 61
    assert box.stats().oldest_age_s == 61
    box.put("health", b"new")
    assert [e.body for e in box.peek()] == [b"new"]
    clock.now += 61
    assert box.expire() == 1
    assert box.stats().dropped["age"] == 2 and box.depth == 0


_WRITER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from device_agent.outbox import Outbox
    box = Outbox(Path(sys.argv[1]))
    print("ready", flush=True)
    while True:
        _, seq = box.put_sequenced("health", lambda s: json.dumps({"seq": s}).encode())
        if seq % 3 == 0:
            box.ack(box.peek(limit=1)[0].id)
    """
)


def test_survives_kill_minus_nine_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    for _round in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    box = Outbox(path)
    seqs = [json.loads(e.body)["seq"] for e in box.peek(limit=10**6)]
    last = box.last_seq("health")
    assert last > 10 and seqs and seqs[-1] == last  # the counter and the rows committed together
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    _, seq = box.put_sequenced("health", lambda s: b"{}")
    assert seq == last + 1


def test_ack_many_deletes_in_one_go(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    ids = [box.put("health", b"abc") for _ in range(5)]
    box.ack_many([ids[0], ids[2], ids[4], 999])
    assert [e.id for e in box.peek()] == [ids[1], ids[3]]
    assert box.depth == 2 and box.stats().bytes == 6
