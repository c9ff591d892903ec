"""The IoT Hub / IoT Edge transport with the real azure-iot-device SDK against the local stand-in
(MQTT over TLS on 127.0.0.N:8883, a workload-API socket, one shared twin store)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_agent.config import ModelConfig
from tests import tls
from tests.fake_host import FakeHost
from tests.hub_session import SessionThread, hub_config
from tests.hubsim.mqtt_server import IoTHubMqttServer
from tests.hubsim.twin_store import TwinStore
from tests.hubsim.workload import WorkloadAPI

HUB = "edgekit-test.azure-devices.net"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tls.TestCA:
    return tls.make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def hub(ca: tls.TestCA) -> Iterator[tuple[TwinStore, IoTHubMqttServer]]:
    store = TwinStore(HUB)
    server = IoTHubMqttServer(store, ca)
    try:
        yield store, server
    finally:
        server.close()


def _until(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _health(
    store: TwinStore, device: str, module: str | None = None
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    return [
        (json.loads(payload), props)
        for d, m, payload, props in list(store.telemetry)
        if d == device and m == module and props.get("type") == "health"
    ]


def _model(tmp_path: Path) -> str:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"ok")
    return str(path)


def test_device_client_telemetry_twin_methods_and_reconnect(
    tmp_path: Path, ca: tls.TestCA, hub: tuple[TwinStore, IoTHubMqttServer]
) -> None:
    store, server = hub
    store.add_device("dev-1")
    connection = store.connection_string("dev-1", gateway=server.host)
    config = hub_config(
        str(tmp_path / "data"), transport="iothub", connection_string=connection, ca_file=str(ca.ca_file)
    )
    host = FakeHost()
    session = SessionThread(config, host)
    try:
        session.call(lambda: host.apply_models([ModelConfig("m", "1", path=_model(tmp_path))]))
        reports = _until(
            lambda: len(_health(store, "dev-1")) >= 2 and _health(store, "dev-1"), what="telemetry"
        )
        report, props = reports[0]
        assert report["seq"] == 1 and report["device_id"] == "dev-1"
        assert props["$.ct"] == "application/json" and props["$.ce"] == "utf-8"
        _until(lambda: "health" in store.twin("dev-1").reported, what="reported health")
        assert store.twin("dev-1").reported["health"]["status"] in ("healthy", "degraded")

        v2 = tmp_path / "v2.onnx"
        v2.write_bytes(b"ok too")
        store.patch_desired(
            "dev-1",
            None,
            {"edgekit": {"revision": 1, "models": [{"name": "m", "version": "2", "path": str(v2)}]}},
        )
        _until(
            lambda: store.twin("dev-1").reported.get("edgekit", {}).get("status") == "applied", what="applied"
        )
        assert store.twin("dev-1").reported["edgekit"]["models"][0]["version"] == "2"

        server.wait_subscribed("dev-1", None, "$iothub/methods/POST/ping/?$rid=1")
        status, payload = store.invoke_method("dev-1", None, "ping", {}, 10)
        assert status == 200 and payload["pong"] is True
        assert store.invoke_method("dev-1", None, "warp", {}, 10)[0] == 404
        assert store.invoke_method("dev-1", None, "set_log_level", {"level": "loud"}, 10)[0] == 400

        # A network blip: the SDK reconnects; the twin is read again and patches still arrive.
        before = server.connections
        server.drop_connections()
        _until(lambda: server.connections > before and server.connected("dev-1"), what="reconnect")
        store.patch_desired("dev-1", None, {"edgekit": {"revision": 2, "settings": {"log_level": "info"}}})
        _until(lambda: store.twin("dev-1").reported["edgekit"].get("revision") == 2, what="revision 2")
        count = len(_health(store, "dev-1"))
        _until(lambda: len(_health(store, "dev-1")) > count + 2, what="telemetry after reconnect")
    finally:
        session.stop()
    seqs = [r["seq"] for r, _ in _health(store, "dev-1")]
    assert list(dict.fromkeys(seqs)) == list(range(1, max(seqs) + 1))


def test_edge_module_from_environment_outputs_and_inputs(
    tmp_path: Path, ca: tls.TestCA, hub: tuple[TwinStore, IoTHubMqttServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, server = hub
    store.add_device("edge-1", edge_enabled=True)
    store.add_module("edge-1", "agent")
    workload = WorkloadAPI(tmp_path / "workload.sock", store, "edge-1", ca.ca_file.read_text())
    workload.generation_ids["agent"] = "gen-1"
    for name, value in {
        "IOTEDGE_IOTHUBHOSTNAME": HUB,
        "IOTEDGE_DEVICEID": "edge-1",
        "IOTEDGE_MODULEID": "agent",
        "IOTEDGE_GATEWAYHOSTNAME": server.host,
        "IOTEDGE_MODULEGENERATIONID": "gen-1",
        "IOTEDGE_WORKLOADURI": workload.uri,
        "IOTEDGE_APIVERSION": "2019-01-30",
    }.items():
        monkeypatch.setenv(name, value)
    config = hub_config(str(tmp_path / "data"), transport="iotedge", device_id="edge-1")
    host = FakeHost()
    session = SessionThread(config, host)
    try:
        session.call(lambda: host.apply_models([ModelConfig("m", "1", path=_model(tmp_path))]))
        reports = _until(lambda: _health(store, "edge-1", "agent"), what="module telemetry")
        assert reports[0][1]["$.on"] == "health"  # a module output, for edgeHub routes
        assert ("GET", "/trust-bundle") in workload.requests
        server.wait_subscribed("edge-1", "agent", "devices/edge-1/modules/agent/inputs/infer/x")
        request = json.dumps({"id": "q1", "inputs": []}).encode()
        assert server.send_to_input("edge-1", "agent", "infer", request, {"model": "m"})

        def answers() -> list[tuple[bytes, dict[str, str]]]:
            return [
                (p, props) for d, m, p, props in list(store.telemetry) if props.get("$.on") == "inferResult"
            ]

        payload, props = _until(answers, what="inference result")[0]
        assert json.loads(payload) == {"model_name": "m", "model_version": "1", "outputs": [], "id": "q1"}
        assert props["model"] == "m"
        server.wait_subscribed("edge-1", "agent", "$iothub/methods/POST/get_models/?$rid=1")
        status, result = store.invoke_method("edge-1", "agent", "get_models", {}, 10)
        assert status == 200 and result["models"][0]["name"] == "m"
        store.patch_desired(
            "edge-1", "agent", {"edgekit": {"revision": 5, "settings": {"log_level": "info"}}}
        )
        _until(
            lambda: store.twin("edge-1", "agent").reported.get("edgekit", {}).get("revision") == 5,
            what="module twin reported",
        )
    finally:
        session.stop()
        workload.close()


def test_device_client_with_an_x509_certificate(
    tmp_path: Path, ca: tls.TestCA, hub: tuple[TwinStore, IoTHubMqttServer]
) -> None:
    store, server = hub
    store.add_device("dev-x")
    connection = f"HostName={HUB};DeviceId=dev-x;GatewayHostName={server.host};x509=true"

    def session_with(cert: tls.ServerCert, data: str) -> SessionThread:
        config = hub_config(
            str(tmp_path / data),
            transport="iothub",
            device_id="dev-x",
            connection_string=connection,
            ca_file=str(ca.ca_file),
            x509_cert_file=str(cert.cert_file),
            x509_key_file=str(cert.key_file),
        )
        host = FakeHost()
        session = SessionThread(config, host)
        session.call(lambda: host.apply_models([ModelConfig("m", "1", path=_model(tmp_path))]))
        return session

    # A certificate of the hub's CA whose subject is another device is refused: nothing arrives.
    impostor = session_with(ca.client_cert("someone-else"), "impostor")
    try:
        time.sleep(1.5)
        assert _health(store, "dev-x") == [] and not server.connected("dev-x")
        assert impostor.error is None  # refused credentials are retried, not the end of the hub side
    finally:
        impostor.stop()
    session = session_with(ca.client_cert("dev-x"), "data")
    try:
        reports = _until(lambda: _health(store, "dev-x"), what="telemetry over X.509")
        assert reports[0][0]["device_id"] == "dev-x" and server.connected("dev-x")
    finally:
        session.stop()
