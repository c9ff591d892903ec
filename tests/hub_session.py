"""Run the agent's hub side (HubSession over a real transport) in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from device_agent.config import AgentConfig, parse_config
from device_agent.host import ModelHost
from device_agent.hub.supervisor import HubSession, make_transport

_SECTIONS = {"iotedge": "iothub"}


def hub_config(data_dir: str, transport: str = "mqtt", **hub: Any) -> AgentConfig:
    return parse_config(
        {
            "device_id": hub.pop("device_id", "dev-1"),
            "data_dir": data_dir,
            "health": {"interval_s": hub.pop("interval_s", 0.2)},
            "rollback": hub.pop("rollback", {}),
            "hub": {"transport": transport, **({_SECTIONS.get(transport, transport): hub} if hub else {})},
        }
    )


class SessionThread:
    def __init__(self, config: AgentConfig, host: ModelHost) -> None:
        self.config = config
        self.host = host
        self.session: HubSession | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="hub-session", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hub session did not start")

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            assert self.config.device_id is not None
            self.session = HubSession(
                self.config,
                self.host,
                make_transport(self.config, self.config.device_id),
                self.config.device_id,
            )
            self._ready.set()
            await self.session.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` (sync, or returning a coroutine) on the session's loop."""
        assert self._loop is not None

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            import sys
            import traceback

            where = "\n".join(
                "".join(traceback.format_stack(frame)) for frame in sys._current_frames().values()
            )
            if self._loop is not None:
                for task in asyncio.run_coroutine_threadsafe(_tasks(), self._loop).result(5):
                    stack = task.get_stack()
                    where += "\n" + (traceback.format_stack(stack[-1])[-1] if stack else "") + repr(task)
            raise RuntimeError(f"hub session did not stop; it is at:\n{where}")
        if self.error is not None:
            raise self.error


async def _tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks()
