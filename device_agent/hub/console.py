"""The console transport: health reports go to stdout, one JSON object per line.

It lets a developer see what a hub would receive (``edge-agent run --model m.onnx
--health-interval 5``, or ``hub.transport: console``) and keeps the same pipeline (outbox,
``seq``) as the real transports. Nothing ever arrives on its streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Mapping
from typing import Any, TextIO

from device_agent.hub.transport import Telemetry, Transport, merge_patch

log = logging.getLogger(__name__)


class ConsoleTransport(Transport):
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream
        self.reported: dict[str, Any] = {}

    async def _start(self) -> None:
        self.connected.set()

    async def close(self) -> None:
        self.connected.clear()

    def send_telemetry(self, message: Telemetry) -> Awaitable[None]:
        stream = self._stream or sys.stdout
        line = message.body.decode("utf-8", errors="replace")
        stream.write(json.dumps({"kind": message.kind, "message": json.loads(line)}) + "\n")
        stream.flush()
        done: asyncio.Future[None] = self.loop.create_future()
        done.set_result(None)
        return done

    async def report_state(self, patch: Mapping[str, Any]) -> None:
        merge_patch(self.reported, patch)
        log.debug("reported state", extra={"patch": dict(patch)})
