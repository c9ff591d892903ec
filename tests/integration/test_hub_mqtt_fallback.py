"""Protocol "auto": a broker that refuses MQTT 5 (the IoT Hub stand-in speaks only 3.1.1) gets a
3.1.1 connection from the same transport."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from pathlib import Path

import paho.mqtt.client as paho

from device_agent.config import MqttConfig
from device_agent.hub.mqtt_transport import MqttTransport
from tests import tls
from tests.hubsim.mqtt_server import IoTHubMqttServer, sas_signature
from tests.hubsim.twin_store import TwinStore

HUB = "fallback-hub.local"


def test_auto_falls_back_to_mqtt_311(tmp_path: Path) -> None:
    ca = tls.make_ca(tmp_path / "ca")
    store = TwinStore(HUB)
    device = store.add_device("dev-1")
    server = IoTHubMqttServer(store, ca)
    resource = urllib.parse.quote(f"{HUB}/devices/dev-1", safe="")
    expiry = str(int(time.time()) + 3600)
    signature = urllib.parse.quote(sas_signature(device.key, resource, expiry), safe="")
    config = MqttConfig(
        url=f"mqtts://{server.host}:8883",
        username=f"{HUB}/dev-1/?api-version=2021-04-12",
        password=f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}",
        ca_file=str(ca.ca_file),
        protocol="auto",
        reconnect_max_delay_s=0.5,
    )

    async def scenario() -> int:
        transport = MqttTransport(config, "dev-1")
        await transport.start()
        try:
            async with asyncio.timeout(15):
                await transport.connected.wait()
            return transport.protocol
        finally:
            await transport.close()

    try:
        assert asyncio.run(scenario()) == paho.MQTTv311
        assert server.connections == 1
    finally:
        server.close()
