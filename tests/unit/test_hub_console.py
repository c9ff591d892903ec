from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from device_agent.config import ModelConfig
from device_agent.hub.console import ConsoleTransport
from device_agent.hub.supervisor import HubSession, make_transport, resolve_device_id
from device_agent.outbox import Outbox
from tests.fake_host import FakeHost
from tests.hub_session import hub_config


def test_without_a_hub_health_reports_go_to_the_console(tmp_path: Path) -> None:
    config = hub_config(str(tmp_path / "data"), transport="console", interval_s=0.05)
    assert isinstance(make_transport(config, "d"), ConsoleTransport)
    stream = io.StringIO()
    host = FakeHost()
    (tmp_path / "m").write_bytes(b"ok")

    async def scenario() -> HubSession:
        await host.apply_models([ModelConfig("m", "1", path=str(tmp_path / "m"))])
        session = HubSession(config, host, ConsoleTransport(stream), "dev-1")
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        while stream.getvalue().count("\n") < 3:
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return session

    session = asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"]["seq"] for line in lines[:3]] == [1, 2, 3]
    assert lines[0]["kind"] == "health" and lines[0]["message"]["models"][0]["name"] == "m"
    assert isinstance(session.transport, ConsoleTransport)
    assert session.transport.reported["health"]["seq"] >= 3
    assert Outbox(tmp_path / "data" / "outbox.sqlite").depth == 0  # printed means acked


def test_device_id_comes_from_config_then_hub_identity_then_host_name(tmp_path: Path) -> None:
    config = hub_config(
        str(tmp_path),
        transport="iothub",
        device_id=None,
        connection_string="HostName=h;DeviceId=cam-9;SharedAccessKey=a2V5",
    )
    assert resolve_device_id(config, {}) == "cam-9"
    edge = hub_config(str(tmp_path), transport="iotedge", device_id=None)
    assert resolve_device_id(edge, {"IOTEDGE_DEVICEID": "edge-3"}) == "edge-3"
    assert resolve_device_id(hub_config(str(tmp_path), device_id="fixed"), {}) == "fixed"


def test_thresholds_from_a_desired_state_judge_the_next_reports(tmp_path: Path) -> None:
    config = hub_config(str(tmp_path / "data"), transport="console", interval_s=60)
    host = FakeHost()
    (tmp_path / "m").write_bytes(b"ok")

    async def scenario() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        await host.apply_models([ModelConfig("m", "1", path=str(tmp_path / "m"))])
        session = HubSession(config, host, ConsoleTransport(io.StringIO()), "dev-1")
        before = await session.health_report()
        settings = {"health": {"interval_s": 60, "thresholds": {"cpu_percent": -1, "memory_percent": -1}}}
        reported = await session.reconciler.apply({"revision": 1, "settings": settings})
        after = await session.health_report()
        return before, reported, after

    before, reported, after = asyncio.run(scenario())
    assert reported["status"] == "applied", reported
    assert before["status"] == "healthy"
    assert after["status"] == "degraded" and any("memory" in r for r in after["reasons"]), after["reasons"]
