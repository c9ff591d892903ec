"""Commands (MQTT ``commands/<name>``, IoT Hub direct methods): one handler per name.

Every request gets exactly one response — ``{"status", "payload"}`` with 200 on success, 400 for a
bad payload, 404 for an unknown command and 500 when the action failed — never silence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from device_agent.errors import AgentError, ConfigError
from device_agent.health import utc_now
from device_agent.host import ModelHost
from device_agent.hub.desired import served_to_report, set_log_level
from device_agent.hub.transport import CommandRequest

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[tuple[int, Any]]]


class Commands:
    def __init__(
        self,
        host: ModelHost,
        health: Callable[[], Awaitable[dict[str, Any]]],
        on_log_level: Callable[[str], None] | None = None,
        on_models_changed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.host = host
        self._health = health
        self._on_log_level = on_log_level
        self._on_models_changed = on_models_changed
        self._started = time.monotonic()
        self.handlers: dict[str, Handler] = {
            "ping": self.ping,
            "get_health": self.get_health,
            "get_models": self.get_models,
            "reload": self.reload,
            "set_log_level": self.set_log_level,
            "rollback": self.rollback,
        }

    async def handle(self, request: CommandRequest) -> None:
        status, payload = await self.run(request.name, request.payload)
        log.info("command answered", extra={"command": request.name, "status": status})
        await request.respond(status, payload)

    async def run(self, name: str, payload: Any) -> tuple[int, Any]:
        handler = self.handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return 404, {"error": f"unknown command {name!r}; this agent knows {known}"}
        if payload is not None and not isinstance(payload, dict):
            return 400, {"error": f"the payload of {name!r} must be a JSON object"}
        try:
            return await handler(payload or {})
        except ConfigError as exc:
            return 400, {"error": str(exc)}
        except AgentError as exc:
            return 500, {"error": str(exc)}
        except Exception as exc:  # a handler bug must still produce an answer, and a log with the trace
            log.exception("command failed", extra={"command": name})
            return 500, {"error": f"{type(exc).__name__}: {exc}"}

    async def ping(self, payload: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"pong": True, "at": utc_now(), "uptime_s": round(time.monotonic() - self._started, 3)}

    async def get_health(self, payload: dict[str, Any]) -> tuple[int, Any]:
        return 200, await self._health()

    async def get_models(self, payload: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"models": served_to_report(self.host.served_models())}

    async def reload(self, payload: dict[str, Any]) -> tuple[int, Any]:
        served = await self.host.reload()
        if self._on_models_changed is not None:
            await self._on_models_changed("applied")
        return 200, {"models": served_to_report(served)}

    async def set_log_level(self, payload: dict[str, Any]) -> tuple[int, Any]:
        level = payload.get("level")
        if not isinstance(level, str):
            raise ConfigError("level", 'give the new level as {"level": "debug|info|warning|error"}')
        set_log_level(level)
        if self._on_log_level is not None:
            self._on_log_level(level)
        return 200, {"level": level}

    async def rollback(self, payload: dict[str, Any]) -> tuple[int, Any]:
        served = await self.host.rollback()
        if self._on_models_changed is not None:
            await self._on_models_changed("rolled_back")
        return 200, {"models": served_to_report(served)}
