from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from device_agent.config import ModelConfig
from device_agent.hub.commands import Commands
from device_agent.hub.transport import CommandRequest
from tests.fake_host import FakeHost


async def _health() -> dict[str, Any]:
    return {"status": "healthy", "seq": 3}


def _host(tmp_path: Path) -> FakeHost:
    host = FakeHost()
    (tmp_path / "m1").write_bytes(b"ok 1")
    (tmp_path / "m2").write_bytes(b"ok 2")
    asyncio.run(host.apply_models([ModelConfig("m", "1", path=str(tmp_path / "m1"))]))
    asyncio.run(host.apply_models([ModelConfig("m", "2", path=str(tmp_path / "m2"))]))
    return host


def test_every_command_answers(tmp_path: Path) -> None:
    host = _host(tmp_path)
    commands = Commands(host, _health)

    async def scenario() -> list[tuple[int, Any]]:
        return [
            await commands.run("ping", {}),
            await commands.run("get_health", None),
            await commands.run("get_models", {}),
            await commands.run("reload", {}),
            await commands.run("rollback", {}),
            await commands.run("rollback", {}),
            await commands.run("rollback", {}),
        ]

    ping, health, models, reload, back, back_again, nothing_left = asyncio.run(scenario())
    assert ping[0] == 200 and ping[1]["pong"] is True
    assert health == (200, {"status": "healthy", "seq": 3})
    assert models[0] == 200 and [m["version"] for m in models[1]["models"]] == ["2"]
    assert reload[0] == 200
    assert back == (
        200,
        {
            "models": [
                {
                    "name": "m",
                    "version": "1",
                    "sha256": None,
                    "providers": ["CPUExecutionProvider"],
                    "ready": True,
                }
            ]
        },
    )
    assert back_again == (200, {"models": []})
    assert nothing_left[0] == 500 and "nothing to roll back" in nothing_left[1]["error"]


def test_unknown_and_malformed_commands_get_clear_errors(tmp_path: Path) -> None:
    commands = Commands(FakeHost(), _health)
    status, payload = asyncio.run(commands.run("self_destruct", {}))
    assert status == 404 and "self_destruct" in payload["error"] and "ping" in payload["error"]
    status, payload = asyncio.run(commands.run("ping", [1, 2]))
    assert status == 400
    status, payload = asyncio.run(commands.run("set_log_level", {"level": "loud"}))
    assert status == 400 and "loud" in payload["error"]
    status, payload = asyncio.run(commands.run("set_log_level", {}))
    assert status == 400


def test_set_log_level_changes_the_root_logger() -> None:
    root = logging.getLogger()
    before = root.level
    seen: list[str] = []
    commands = Commands(FakeHost(), _health, on_log_level=seen.append)
    replies: list[tuple[int, Any]] = []

    async def respond(status: int, payload: Any) -> None:
        replies.append((status, payload))

    try:
        asyncio.run(commands.handle(CommandRequest("set_log_level", {"level": "debug"}, respond)))
        assert root.level == logging.DEBUG and seen == ["debug"]
        assert replies == [(200, {"level": "debug"})]
    finally:
        root.setLevel(before)
