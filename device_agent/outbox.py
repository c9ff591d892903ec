"""A durable queue of outgoing telemetry: SQLite in WAL mode, one row per message.

Every message is written here before it is handed to the hub and deleted only when the broker
acknowledges it (QoS 1 PUBACK, or the IoT Hub SDK's completed send), so a broker outage or a
``kill -9`` loses nothing: the next connection, or the next process, replays what is left in
insertion order. Duplicates are possible after a crash between the broker's ack and our delete
(at-least-once); consumers de-duplicate by the per-device ``seq`` that :meth:`Outbox.put_sequenced`
allocates in the same transaction as the row, so the counter survives restarts without gaps.

Bounds (count, bytes, age) drop the oldest rows first and count what they dropped, by reason.
WAL with ``synchronous=NORMAL`` is durable against process crashes (the case that matters here);
an OS crash may lose the last commits but never corrupts the file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from device_agent.errors import HubError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_created ON messages(created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_DROP_REASONS = ("count", "bytes", "age")


@dataclass(frozen=True)
class Limits:
    max_messages: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str  # what the message is ("health"); each transport maps it to a topic or output
    body: bytes
    properties: dict[str, str]
    created: float


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    dropped: dict[str, int]  # by reason: count, bytes, age
    oldest_age_s: float | None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Outbox:
    """Thread-safe: the agent's loop writes, transport threads may ack."""

    def __init__(self, path: Path, limits: Limits = Limits(), clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so each put is one transaction.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise HubError(f"cannot open the outbox at {path}: {exc}") from exc
        self._depth = 0
        self._bytes = 0
        self._reload_totals()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # writing -------------------------------------------------------------------------------
    def put(self, kind: str, body: bytes, properties: Mapping[str, str] | None = None) -> int:
        """Store one message; returns its id."""
        return self._insert(kind, lambda _seq: body, properties, sequenced=False)[0]

    def put_sequenced(
        self, kind: str, build: Callable[[int], bytes], properties: Mapping[str, str] | None = None
    ) -> tuple[int, int]:
        """Allocate the next ``seq`` of ``kind`` and store ``build(seq)`` in one transaction.

        Returns ``(id, seq)``. A crash before the commit leaves neither, so ``seq`` has no gaps
        except where the bounds dropped messages (and those are counted).
        """
        return self._insert(kind, build, properties, sequenced=True)

    def _insert(
        self,
        kind: str,
        build: Callable[[int], bytes],
        properties: Mapping[str, str] | None,
        sequenced: bool,
    ) -> tuple[int, int]:
        props = json.dumps(dict(properties or {}), separators=(",", ":"))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = 0
                if sequenced:
                    row = self._db.execute(
                        "INSERT INTO counters(name, value) VALUES (?, 1) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
                        (f"seq:{kind}",),
                    ).fetchone()
                    seq = int(row[0])
                body = build(seq)
                cursor = self._db.execute(
                    "INSERT INTO messages(kind, body, properties, created, size) VALUES (?, ?, ?, ?, ?)",
                    (kind, body, props, self._clock(), len(body)),
                )
                message_id = int(cursor.lastrowid or 0)
                self._depth += 1
                self._bytes += len(body)
                self._enforce_limits()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise HubError(f"cannot write to the outbox at {self.path}: {exc}") from exc
        return message_id, seq

    def _enforce_limits(self) -> None:
        """Drop the oldest rows past any bound (called inside a write transaction)."""
        cutoff = self._clock() - self.limits.max_age_s
        rows = self._db.execute("DELETE FROM messages WHERE created < ? RETURNING size", (cutoff,)).fetchall()
        self._count_drops("age", rows)
        excess = self._depth - self.limits.max_messages
        if excess > 0:
            rows = self._db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?) "
                "RETURNING size",
                (excess,),
            ).fetchall()
            self._count_drops("count", rows)
        excess_bytes = self._bytes - self.limits.max_bytes
        if excess_bytes > 0:
            freed, last_id = 0, None
            for message_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
                freed, last_id = freed + size, message_id
                if freed >= excess_bytes:
                    break
            rows = self._db.execute(
                "DELETE FROM messages WHERE id <= ? RETURNING size", (last_id,)
            ).fetchall()
            self._count_drops("bytes", rows)

    def _count_drops(self, reason: str, rows: list[tuple[int]]) -> None:
        if not rows:
            return
        self._depth -= len(rows)
        self._bytes -= sum(r[0] for r in rows)
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (f"dropped:{reason}", len(rows)),
        )
        log.warning("outbox dropped messages", extra={"reason": reason, "dropped": len(rows)})

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    # reading -------------------------------------------------------------------------------
    def peek(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        """The oldest messages with an id above ``after_id``, in insertion order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, body, properties, created FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Entry(r[0], r[1], bytes(r[2]), json.loads(r[3]), r[4]) for r in rows]

    def ack(self, message_id: int) -> None:
        """The broker has the message: forget it. Acking an id already gone is harmless."""
        with self._lock:
            row = self._db.execute(
                "DELETE FROM messages WHERE id = ? RETURNING size", (message_id,)
            ).fetchone()
            if row is not None:
                self._depth -= 1
                self._bytes -= row[0]

    def ack_many(self, message_ids: list[int]) -> None:
        """Forget several acknowledged messages in one transaction (one commit, not one each)."""
        if not message_ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for message_id in message_ids:
                    row = self._db.execute(
                        "DELETE FROM messages WHERE id = ? RETURNING size", (message_id,)
                    ).fetchone()
                    if row is not None:
                        self._depth -= 1
                        self._bytes -= row[0]
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise HubError(f"cannot update the outbox at {self.path}: {exc}") from exc

    def expire(self) -> int:
        """Apply the age bound now (it is otherwise applied on each write); returns how many went."""
        with self._lock:
            before = self._depth
            self._db.execute("BEGIN IMMEDIATE")
            self._enforce_limits()
            self._db.execute("COMMIT")
            return before - self._depth

    def last_seq(self, kind: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (f"seq:{kind}",)).fetchone()
        return int(row[0]) if row else 0

    @property
    def depth(self) -> int:
        return int(self._depth)

    def stats(self) -> OutboxStats:
        with self._lock:
            dropped = dict.fromkeys(_DROP_REASONS, 0)
            for name, value in self._db.execute(
                "SELECT name, value FROM counters WHERE name LIKE 'dropped:%'"
            ).fetchall():
                dropped[name.split(":", 1)[1]] = int(value)
            oldest = self._db.execute("SELECT MIN(created) FROM messages").fetchone()[0]
        return OutboxStats(
            depth=int(self._depth),
            bytes=int(self._bytes),
            dropped=dropped,
            oldest_age_s=None if oldest is None else max(0.0, self._clock() - oldest),
        )
