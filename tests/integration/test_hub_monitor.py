"""`edgekit monitor` watching a real agent hub side through a real Mosquitto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import tls
from tests.brokers import start_mosquitto
from tests.fake_host import FakeHost
from tests.hub_session import SessionThread, hub_config
from tests.hubsim.mqtt_server import IoTHubMqttServer
from tests.hubsim.service import ServiceAPI
from tests.hubsim.twin_store import TwinStore


@pytest.mark.mqtt
def test_monitor_shows_devices_from_the_health_stream(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path / "broker") as broker:
        sessions = [
            SessionThread(hub_config(str(tmp_path / d), url=broker.url, device_id=d), FakeHost())
            for d in ("cam-1", "cam-2")
        ]
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edge_toolkit.cli.main",
                    "monitor",
                    "--mqtt",
                    broker.url,
                    "--once",
                    "--duration",
                    "1.5",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            table = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edge_toolkit.cli.main",
                    "monitor",
                    "--mqtt",
                    broker.url,
                    "--once",
                    "--duration",
                    "0.8",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        finally:
            for session in sessions:
                session.stop()
    rows = json.loads(result.stdout)
    assert [r["device_id"] for r in rows] == ["cam-1", "cam-2"]
    for row in rows:
        assert row["status"] in ("healthy", "degraded") and row["online"] is True
        assert row["seq"] >= 3 and row["gaps"] == 0 and row["cpu_percent"] is not None
    assert "cam-1" in table.stdout and "edgekit fleet" in table.stdout


def test_monitor_needs_exactly_one_source() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_toolkit.cli.main", "monitor", "--once"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "exactly one of --mqtt" in result.stderr


def test_monitor_reads_iot_hub_twins(tmp_path: Path) -> None:
    ca = tls.make_ca(tmp_path / "ca")
    store = TwinStore("monitor-hub.local")
    store.add_device("cam-7")
    hub = IoTHubMqttServer(store, ca)
    config = hub_config(
        str(tmp_path / "data"),
        transport="iothub",
        device_id="cam-7",
        connection_string=store.connection_string("cam-7", gateway=hub.host),
        ca_file=str(ca.ca_file),
    )
    session = SessionThread(config, FakeHost())
    try:
        deadline = time.monotonic() + 15
        while "health" not in store.twin("cam-7").reported:
            assert time.monotonic() < deadline, "no reported health"
            time.sleep(0.05)
        with ServiceAPI(store, ca) as service:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edge_toolkit.cli.main",
                    "monitor",
                    "--hub-connection-string",
                    service.connection_string,
                    "--once",
                    "--duration",
                    "0.2",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**os.environ, "REQUESTS_CA_BUNDLE": str(ca.ca_file)},
            )
    finally:
        session.stop()
        hub.close()
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["device_id"] == "cam-7" and row["status"] in ("healthy", "degraded") and row["seq"] >= 1
