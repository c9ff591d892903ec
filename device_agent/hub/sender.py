"""Moves telemetry from the durable outbox to the transport, in order, deleting on ack only.

Up to ``window`` messages are in flight at once (so a backlog replays at the broker's speed, not
one round trip per message). A message whose send fails is handed over again, with everything
after it that is not already in flight; duplicates that this may cause carry the same ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from device_agent.errors import HubError
from device_agent.hub.transport import Telemetry, Transport
from device_agent.outbox import Outbox

log = logging.getLogger(__name__)


class OutboxSender:
    def __init__(self, outbox: Outbox, transport: Transport, window: int = 100) -> None:
        self.outbox = outbox
        self.transport = transport
        self.window = window
        self._wake = asyncio.Event()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._cursor = 0  # highest outbox id handed to the transport
        self._acked: list[int] = []  # acks waiting for one batched delete (see _flush_acks)
        self.sent = 0
        self.acked = 0
        self.failed = 0

    def wake(self) -> None:
        """New messages are in the outbox."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        while True:
            await self.transport.connected.wait()
            self._wake.clear()
            room = self.window - len(self._pending)
            entries = self.outbox.peek(self._cursor, room) if room > 0 else []
            if not entries:
                # Wait for new messages, an ack that frees room, or a periodic look (the
                # connection may have come back while we were waiting for an ack).
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives as the event is set, and the task would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            for entry in entries:
                self._cursor = entry.id
                if entry.id in self._pending:
                    continue
                message = Telemetry(entry.kind, entry.body, entry.properties)
                try:
                    ack = self.transport.send_telemetry(message)
                except HubError as exc:
                    log.warning("telemetry hand-over failed", extra={"error": str(exc)})
                    self._cursor = entry.id - 1
                    await asyncio.sleep(0.5)
                    break
                self.sent += 1
                self._track(entry.id, ack)

    def _track(self, message_id: int, ack: Awaitable[None]) -> None:
        future = asyncio.ensure_future(ack)
        self._pending[message_id] = future
        future.add_done_callback(lambda f: self._done(message_id, f))

    def _done(self, message_id: int, future: asyncio.Future[None]) -> None:
        self._pending.pop(message_id, None)
        if future.cancelled() or future.exception() is not None:
            self.failed += 1
            # Hand it over again, in order, with what follows it.
            self._cursor = min(self._cursor, message_id - 1)
        else:
            self.acked += 1
            if not self._acked:
                # Acks arrive in bursts during a replay: delete them in one transaction per burst.
                asyncio.get_running_loop().call_soon(self._flush_acks)
            self._acked.append(message_id)
        self._wake.set()

    def _flush_acks(self) -> None:
        acked, self._acked = self._acked, []
        self.outbox.ack_many(acked)

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight (for shutdown and tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.outbox.depth or self._pending or self._acked:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
