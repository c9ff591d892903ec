"""Order of IoT Hub telemetry when the hub does not take a message. The seam replaced is the SDK
(client start and ``_send``), to inject the failure; the send loop, outbox and sender are real."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from azure.iot.device import exceptions as iot_exceptions

from device_agent.config import IoTHubConfig
from device_agent.hub import iothub_transport
from device_agent.hub.iothub_transport import IoTHubTransport
from device_agent.hub.sender import OutboxSender
from device_agent.hub.transport import Telemetry
from device_agent.outbox import Outbox


class FlakyHub(IoTHubTransport):
    """Drops the connection on the first try of seq 2; records what the hub took, in order."""

    def __init__(self) -> None:
        super().__init__(IoTHubConfig(connection_string="HostName=h;DeviceId=d;SharedAccessKey=YQ=="))
        self.delivered: list[int] = []
        self.failed: set[int] = set()
        self.tries = 0

    async def _start(self) -> None:
        # No SDK client: only the transport's own send loop, with _send as the hub.
        self._tasks = [asyncio.create_task(self._send_loop(), name="iothub-send")]
        self.connected.set()

    async def _send(self, telemetry: Telemetry) -> None:
        seq = json.loads(telemetry.body)["seq"]
        self.tries += 1
        await asyncio.sleep(0.005)
        if seq == 2 and 2 not in self.failed:
            self.failed.add(2)
            raise iot_exceptions.ConnectionDroppedError("dropped")
        self.delivered.append(seq)


def test_a_message_the_hub_did_not_take_is_retried_before_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iothub_transport, "_RETRY_FIRST_S", 0.01)  # the clock, not our logic

    async def scenario() -> FlakyHub:
        hub = FlakyHub()
        await hub.start()
        outbox = Outbox(tmp_path / "outbox.sqlite")
        for _ in range(6):
            outbox.put_sequenced("health", lambda seq: json.dumps({"seq": seq}).encode())
        sender = OutboxSender(outbox, hub)
        task = asyncio.create_task(sender.run())
        assert await sender.drain(10)
        task.cancel()
        await hub.close()
        return hub

    hub = asyncio.run(scenario())
    assert hub.delivered == [1, 2, 3, 4, 5, 6]
    assert hub.tries == 7  # seq 2 twice, nothing else resent
