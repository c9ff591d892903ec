"""The deploy operations the CLI offers, as a Python API.

Each takes the manifest as written (secret references unresolved), resolves secrets in memory,
sends it, and records it in the workspace history (unresolved) so it can be rolled back to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_toolkit.deploy import mqtt
from edge_toolkit.deploy.history import DeploymentHistory
from edge_toolkit.deploy.iothub import Deployment, IoTHubDeployer
from edge_toolkit.deploy.status import AgentReport, Outcome
from edge_toolkit.errors import DeployError
from edge_toolkit.manifest import secrets, validate
from edge_toolkit.workspace import Workspace

log = logging.getLogger(__name__)

OnUpdate = Callable[[AgentReport, Outcome], None]


@dataclass(frozen=True)
class DeviceDeployResult:
    device_id: str
    record_id: int
    desired_version: int
    outcome: Outcome | None  # None when not watched
    rolled_back_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "deployment": self.record_id,
            "desired_version": self.desired_version,
            "status": self.outcome.state if self.outcome else "applied",
            "reason": self.outcome.reason if self.outcome else "",
            "rolled_back_to": self.rolled_back_to,
        }


def _prepare(manifest: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    validate.check(manifest)
    return secrets.resolve(manifest, values)


def deploy_to_device(
    workspace: Workspace,
    deployer: IoTHubDeployer,
    device_id: str,
    manifest: Mapping[str, Any],
    values: Mapping[str, str],
    *,
    wait: bool = False,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
    rollback: bool = False,
    on_update: OnUpdate | None = None,
) -> DeviceDeployResult:
    """Apply to one device; with `wait`, watch it; with `rollback` (implies `wait`), re-apply the last
    good manifest on failure."""
    wait = wait or rollback
    resolved = _prepare(manifest, values)
    history = DeploymentHistory(workspace)
    target = deployer.target(device_id)
    version = deployer.apply_to_device(device_id, resolved)
    record_id = history.record(target, dict(manifest))
    if not wait:
        return DeviceDeployResult(device_id, record_id, version, None)
    outcome = deployer.watch(
        device_id, resolved, version, timeout_s=timeout_s, poll_s=poll_s, on_update=on_update
    )
    history.set_status(record_id, "succeeded" if outcome.state == "succeeded" else "failed", outcome.reason)
    if outcome.state == "succeeded" or not rollback:
        return DeviceDeployResult(device_id, record_id, version, outcome)
    previous = history.last_good(target, before=record_id)
    if previous is None:
        raise DeployError(
            f"the deployment failed ({outcome.reason}) and {device_id} has no earlier successful "
            "deployment in this workspace to roll back to"
        )
    log.warning(
        "deployment failed; rolling back",
        extra={"device_id": device_id, "failed": record_id, "to": previous.id, "reason": outcome.reason},
    )
    rollback_version = deployer.apply_to_device(device_id, _prepare(previous.manifest, values))
    history.set_status(record_id, "rolled_back", f"{outcome.reason}; rolled back to #{previous.id}")
    rollback_id = history.record(target, previous.manifest, detail=f"rollback of #{record_id}")
    back = deployer.watch(
        device_id,
        previous.manifest,
        rollback_version,
        timeout_s=timeout_s,
        poll_s=poll_s,
        on_update=on_update,
    )
    history.set_status(rollback_id, "succeeded" if back.state == "succeeded" else "failed", back.reason)
    return DeviceDeployResult(device_id, record_id, version, outcome, rolled_back_to=previous.id)


def rollback_device(
    workspace: Workspace,
    deployer: IoTHubDeployer,
    device_id: str,
    values: Mapping[str, str],
    **watch: Any,
) -> DeviceDeployResult:
    """Re-apply the newest manifest that succeeded on `device_id`."""
    previous = DeploymentHistory(workspace).last_good(deployer.target(device_id))
    if previous is None:
        raise DeployError(f"{device_id} has no successful deployment recorded in this workspace")
    return deploy_to_device(workspace, deployer, device_id, previous.manifest, values, **watch)


def deploy_fleet(
    workspace: Workspace,
    deployer: IoTHubDeployer,
    deployment_id: str,
    manifest: Mapping[str, Any],
    values: Mapping[str, str],
    *,
    target_condition: str,
    priority: int,
    labels: Mapping[str, str] | None = None,
    layered: bool = False,
) -> Deployment:
    resolved = _prepare(manifest, values)
    created = deployer.create_deployment(
        deployment_id,
        resolved,
        target_condition=target_condition,
        priority=priority,
        labels=labels,
        layered=layered,
    )
    DeploymentHistory(workspace).record(
        f"iothub://{deployer.hostname}/deployments/{deployment_id}", dict(manifest), detail=target_condition
    )
    return created


def deploy_mqtt(
    workspace: Workspace,
    url: str,
    device_id: str,
    manifest: Mapping[str, Any],
    values: Mapping[str, str],
    *,
    module: str | None = None,
    prefix: str = mqtt.DEFAULT_PREFIX,
    ca_file: Path | None = None,
) -> str:
    """Publish the manifest's agent desired state retained for a plain-MQTT device; return the topic."""
    state = secrets.resolve(mqtt.desired_state(manifest, module), values)
    topic = mqtt.publish_desired_state(url, device_id, state, prefix=prefix, ca_file=ca_file)
    address = mqtt.parse_url(url)
    DeploymentHistory(workspace).record(f"{address.display}/{device_id}", dict(manifest), detail=topic)
    return topic
