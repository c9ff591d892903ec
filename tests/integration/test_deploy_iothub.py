"""`edgekit deploy` through the real azure-iot-hub SDK against the local HTTPS hub stand-in.

The IoT Edge runtime itself is not here: `EdgeRuntime` plays its part at the twin level, reporting
`$edgeAgent` status after each desired change the way edgeAgent does (lastDesiredVersion,
lastDesiredStatus, runtimeStatus per module), so `--wait` and rollback are exercised on the wire.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_toolkit.cli.main import cli
from edge_toolkit.deploy import api
from edge_toolkit.deploy.history import DeploymentHistory
from edge_toolkit.deploy.iothub import IoTHubDeployer
from edge_toolkit.errors import DeployError, ManifestError
from edge_toolkit.workspace import Workspace
from tests.hubsim.service import ServiceAPI
from tests.hubsim.twin_store import TwinStore
from tests.tls import ServerCert, TestCA, make_ca

GOLDEN = Path(__file__).parent.parent / "golden" / "manifest" / "cases"
SECRETS = {"CONTAINER_REGISTRY_PASSWORD": "s3cret-pw"}
FAST = {"timeout_s": 10.0, "poll_s": 0.05}


class EdgeRuntime:
    """Reports $edgeAgent status for desired changes: modules whose image mentions 'broken' fail."""

    def __init__(self, store: TwinStore, device_id: str, respond: bool = True) -> None:
        self.store = store
        self.device_id = device_id
        self.respond = respond
        store.on_desired_patch(self._on_patch)

    def _on_patch(self, device_id: str, module_id: str | None, patch: dict[str, Any], version: int) -> None:
        if device_id != self.device_id or module_id != "$edgeAgent" or not self.respond:
            return
        # Report a moment later, from another thread, as the real agent does.
        threading.Timer(0.05, self._report, args=(version,)).start()

    def _report(self, version: int) -> None:
        desired = self.store.twin(self.device_id, "$edgeAgent").desired
        reported: dict[str, Any] = {
            "lastDesiredVersion": version,
            "lastDesiredStatus": {"code": 200, "description": ""},
            "systemModules": {n: {"runtimeStatus": "running"} for n in desired.get("systemModules", {})},
            "modules": None,  # replace, do not merge, the previous modules
        }
        self.store.patch_reported(self.device_id, "$edgeAgent", reported)
        modules = {
            name: {"runtimeStatus": "failed", "exitCode": 3}
            if "broken" in module["settings"]["image"]
            else {"runtimeStatus": module.get("status", "running"), "exitCode": 0}
            for name, module in desired.get("modules", {}).items()
        }
        self.store.patch_reported(self.device_id, "$edgeAgent", {"modules": modules})


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_ca(tmp_path_factory.mktemp("hubca"))


@pytest.fixture(scope="module")
def hub_cert(ca: TestCA) -> ServerCert:
    return ca.server_cert("hub-service", ["127.0.0.1", "localhost"])


@pytest.fixture
def hub(ca: TestCA, hub_cert: ServerCert, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceAPI]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.ca_file))
    store = TwinStore("edgekit-test-hub.local")
    store.add_device("dev1", edge_enabled=True)
    store.add_device("leaf", edge_enabled=False)
    with ServiceAPI(store, ca, cert=hub_cert) as service:
        yield service


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / "single-module" / "expected.amd64.json").read_text())
    return loaded


def _with_image(manifest: dict[str, Any], image: str) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    module = changed["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["edgeinference"]
    module["settings"]["image"] = image
    return changed


def test_apply_and_wait_succeeds_with_secrets_resolved_in_memory_only(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    EdgeRuntime(hub.store, "dev1")
    updates: list[str] = []
    result = api.deploy_to_device(
        workspace,
        IoTHubDeployer(hub.connection_string),
        "dev1",
        manifest,
        SECRETS,
        wait=True,
        on_update=lambda report, outcome: updates.append(outcome.state),
        **FAST,
    )
    assert result.outcome is not None and result.outcome.state == "succeeded", result.outcome
    assert updates[-1] == "succeeded"
    agent = hub.store.twin("dev1", "$edgeAgent").desired
    creds = agent["runtime"]["settings"]["registryCredentials"]["registry"]
    assert creds["password"] == "s3cret-pw"  # sent resolved …
    assert hub.store.twin("dev1", "edgeinference").desired["edgekit"]["revision"] == 1
    assert hub.store.twin("dev1", "$edgeHub").desired["schemaVersion"] == "1.2"
    (record,) = DeploymentHistory(workspace).list()
    assert record.status == "succeeded"
    assert "s3cret-pw" not in json.dumps(record.manifest)  # … but stored as a reference
    assert ("POST", "/devices/dev1/applyConfigurationContent") in hub.requests


def test_failure_rolls_back_to_the_last_good_manifest(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    EdgeRuntime(hub.store, "dev1")
    deployer = IoTHubDeployer(hub.connection_string)
    good = api.deploy_to_device(workspace, deployer, "dev1", manifest, SECRETS, wait=True, **FAST)
    broken = _with_image(manifest, "localhost:5000/broken:1")
    failed = api.deploy_to_device(
        workspace, deployer, "dev1", broken, SECRETS, wait=True, rollback=True, **FAST
    )
    assert failed.outcome is not None and failed.outcome.state == "failed"
    assert "module edgeinference failed, exit code 3" in failed.outcome.reason
    assert failed.rolled_back_to == good.record_id
    image = hub.store.twin("dev1", "$edgeAgent").desired["modules"]["edgeinference"]["settings"]["image"]
    assert image == "localhost:5000/edgeinference:0.0.1-amd64"
    statuses = [(r.status, r.detail.split(";")[0]) for r in reversed(DeploymentHistory(workspace).list())]
    assert [s for s, _ in statuses] == ["succeeded", "rolled_back", "succeeded"]


def test_failure_without_a_good_one_to_return_to(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    EdgeRuntime(hub.store, "dev1")
    broken = _with_image(manifest, "localhost:5000/broken:1")
    with pytest.raises(DeployError, match="no earlier successful deployment"):
        api.deploy_to_device(
            workspace, IoTHubDeployer(hub.connection_string), "dev1", broken, SECRETS, rollback=True, **FAST
        )


def test_wait_times_out_naming_what_it_waited_for(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    EdgeRuntime(hub.store, "dev1", respond=False)
    result = api.deploy_to_device(
        workspace,
        IoTHubDeployer(hub.connection_string),
        "dev1",
        manifest,
        SECRETS,
        wait=True,
        timeout_s=0.3,
        poll_s=0.05,
    )
    assert result.outcome is not None and result.outcome.state == "failed"
    assert result.outcome.reason.startswith("timed out after 0s: the agent has not acted on desired version")


def test_missing_secret_stops_before_anything_is_sent(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    with pytest.raises(ManifestError, match=r"\$\{CONTAINER_REGISTRY_PASSWORD\} is not set"):
        api.deploy_to_device(workspace, IoTHubDeployer(hub.connection_string), "dev1", manifest, {})
    assert hub.requests == []


def test_hub_errors_are_translated(hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]) -> None:
    wrong_key = hub.connection_string.replace(hub.key, "A" * 43 + "=")
    with pytest.raises(DeployError, match=r"\(401\).*check the connection string"):
        api.deploy_to_device(workspace, IoTHubDeployer(wrong_key), "dev1", manifest, SECRETS)
    with pytest.raises(DeployError, match=r"\(404\).*check the device"):
        api.deploy_to_device(workspace, IoTHubDeployer(hub.connection_string), "nosuch", manifest, SECRETS)
    with pytest.raises(DeployError, match="lacks SharedAccessKey"):
        IoTHubDeployer(f"HostName={hub.hostname};SharedAccessKeyName=iothubowner")


def test_fleet_deployment_targets_tagged_devices(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    hub.store.add_device("dev2", edge_enabled=True)
    hub.store.twin("dev2").tags.update({"site": {"name": "plant-1"}})
    deployer = IoTHubDeployer(hub.connection_string)
    created = api.deploy_fleet(
        workspace,
        deployer,
        "edgeinference-v1",
        manifest,
        SECRETS,
        target_condition="tags.site.name='plant-1'",
        priority=20,
        labels={"model": "mlp"},
    )
    assert (created.id, created.priority) == ("edgeinference-v1", 20)
    stored = hub.store.configurations["edgeinference-v1"]
    assert stored["labels"] == {"model": "mlp"}
    assert stored["targetCondition"] == "tags.site.name='plant-1'"
    assert "edgeinference" in hub.store.twin("dev2", "$edgeAgent").desired["modules"]
    assert ("dev1", "$edgeAgent") not in hub.store.twins
    with pytest.raises(DeployError, match=r"\(409\).*choose a new --deployment-id"):
        api.deploy_fleet(
            workspace, deployer, "edgeinference-v1", manifest, SECRETS, target_condition="*", priority=1
        )


def test_layered_fleet_deployment_patches_on_top(
    hub: ServiceAPI, workspace: Workspace, manifest: dict[str, Any]
) -> None:
    deployer = IoTHubDeployer(hub.connection_string)
    api.deploy_fleet(
        workspace, deployer, "base", manifest, SECRETS, target_condition="deviceId='dev1'", priority=1
    )
    layer = json.loads((GOLDEN / "layered" / "expected.amd64.json").read_text())
    with pytest.raises(DeployError, match="add --layered"):
        api.deploy_fleet(workspace, deployer, "layer", layer, SECRETS, target_condition="*", priority=2)
    api.deploy_fleet(
        workspace,
        deployer,
        "layer",
        layer,
        SECRETS,
        target_condition="deviceId='dev1'",
        priority=2,
        layered=True,
    )
    desired = hub.store.twin("dev1", "edgeinference").desired
    assert desired["edgekit"]["revision"] == 2
    assert "healthToUpstream" in hub.store.twin("dev1", "$edgeHub").desired["routes"]  # base kept


def test_cli_deploy_wait_and_rollback(
    hub: ServiceAPI, tmp_path: Path, manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    EdgeRuntime(hub.store, "dev1")
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", hub.connection_string)
    good, broken = tmp_path / "good.json", tmp_path / "broken.json"
    good.write_text(json.dumps(manifest))
    broken.write_text(json.dumps(_with_image(manifest, "localhost:5000/broken:2")))
    env = tmp_path / "secrets.env"
    env.write_text("CONTAINER_REGISTRY_PASSWORD=from-file\n")
    base = [
        "-w",
        str(tmp_path / "ws"),
        "deploy",
        "--device",
        "dev1",
        "--env-file",
        str(env),
        "--poll",
        "0.05",
    ]
    runner = CliRunner()
    ok = runner.invoke(cli, [*base, str(good), "--wait", "--json"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["status"] == "succeeded"
    bad = runner.invoke(cli, [*base, str(broken), "--wait"])
    assert isinstance(bad.exception, DeployError)
    assert "rerun with --rollback" in str(bad.exception)
    back = runner.invoke(cli, [*base, "--rollback"], catch_exceptions=False)
    assert back.exit_code == 0, back.output
    assert "deployed to dev1" in back.output
    image = hub.store.twin("dev1", "$edgeAgent").desired["modules"]["edgeinference"]["settings"]["image"]
    assert image.endswith("edgeinference:0.0.1-amd64")
    assert (
        hub.store.twin("dev1", "$edgeAgent").desired["runtime"]["settings"]["registryCredentials"][
            "registry"
        ]["password"]
        == "from-file"
    )


def test_cli_deploy_reads_the_env_file_that_manifest_gen_used(
    hub: ServiceAPI, tmp_path: Path, manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The solution layout gen leaves: .env beside the template, the manifest in config/.
    (tmp_path / "config").mkdir()
    written = tmp_path / "config" / "deployment.amd64.json"
    written.write_text(json.dumps(manifest))
    (tmp_path / ".env").write_text("CONTAINER_REGISTRY_PASSWORD=beside-the-template\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where the .env is: found from the manifest's place
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", hub.connection_string)
    monkeypatch.delenv("CONTAINER_REGISTRY_PASSWORD", raising=False)
    result = CliRunner().invoke(
        cli, ["-w", str(tmp_path / "ws"), "deploy", str(written), "--device", "dev1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    settings = hub.store.twin("dev1", "$edgeAgent").desired["runtime"]["settings"]
    assert settings["registryCredentials"]["registry"]["password"] == "beside-the-template"
