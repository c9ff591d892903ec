"""Deploying through Azure IoT Hub's service API. The only module that imports azure.iot.hub.

One device: `apply_configuration_on_edge_device` (the device's module twins get the manifest's
desired properties). A fleet: `create_configuration` with a target condition and priority; IoT Hub
applies it to matching devices itself. `watch` polls the `$edgeAgent` module twin until every module
reports the desired status, one fails, or time runs out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edge_toolkit.deploy.status import AgentReport, Outcome, assess, expected_modules
from edge_toolkit.errors import DeployError, MissingExtraError
from edge_toolkit.manifest.document import EDGE_AGENT, is_layered, modules_content

log = logging.getLogger(__name__)

CONNECTION_STRING_ENV = "IOTHUB_CONNECTION_STRING"


@dataclass(frozen=True)
class Deployment:
    """A fleet deployment as IoT Hub stored it."""

    id: str
    etag: str | None
    target_condition: str
    priority: int


def parse_connection_string(connection_string: str) -> dict[str, str]:
    """`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` → its parts (key never logged)."""
    parts: dict[str, str] = {}
    for item in connection_string.strip().split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise DeployError(f"the hub connection string has a malformed part {key!r}; expected Key=Value")
        parts[key] = value
    missing = [k for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if not parts.get(k)]
    if missing:
        raise DeployError(
            f"the hub connection string lacks {', '.join(missing)}; use a shared access policy's "
            "connection string (e.g. iothubowner) from the hub's 'Shared access policies'"
        )
    return parts


class IoTHubDeployer:
    def __init__(self, connection_string: str) -> None:
        self._parts = parse_connection_string(connection_string)
        self._connection_string = connection_string
        self._configs: Any = None
        self._registry: Any = None

    @property
    def hostname(self) -> str:
        return self._parts["HostName"]

    def target(self, device_id: str) -> str:
        return f"iothub://{self.hostname}/{device_id}"

    # SDK clients (imported lazily: azure-iot-hub is a workspace extra) -------------------------------
    def _clients(self) -> tuple[Any, Any]:
        if self._configs is None:
            try:
                from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
            except ImportError as exc:
                raise MissingExtraError("azure-iot-hub", "workspace") from exc
            with self._errors("connect"):
                self._configs = IoTHubConfigurationManager.from_connection_string(self._connection_string)
                self._registry = IoTHubRegistryManager.from_connection_string(self._connection_string)
        return self._configs, self._registry

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate SDK and transport errors into DeployError at this one boundary."""
        try:
            yield
        except DeployError:
            raise
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if status is not None:
                text = str(getattr(response, "text", ""))
                hint = {
                    401: "check the connection string's key and policy name",
                    404: "check the device or deployment id",
                    409: "a deployment with that id exists; choose a new --deployment-id",
                    412: "the deployment changed meanwhile; retry",
                }.get(status, "see the hub's message")
                raise DeployError(f"IoT Hub refused to {action} ({status}): {text[:300]}; {hint}") from exc
            raise DeployError(f"cannot {action} at {self.hostname}: {exc}") from exc

    # operations ----------------------------------------------------------------------------------
    def apply_to_device(self, device_id: str, manifest: Mapping[str, Any]) -> int:
        """Apply to one edge device; return the `$edgeAgent` desired version the hub assigned."""
        content, _ = modules_content(manifest)
        if content is None or is_layered(content):
            raise DeployError(
                "a single device needs a full manifest (modulesContent with $edgeAgent and $edgeHub); "
                "deploy layered manifests with --deployment-id --layered"
            )
        configs, registry = self._clients()
        from azure.iot.hub.models import ConfigurationContent

        with self._errors(f"apply the manifest to {device_id}"):
            configs.apply_configuration_on_edge_device(
                device_id, ConfigurationContent(modules_content=content)
            )
        log.info("manifest applied", extra={"hub": self.hostname, "device_id": device_id})
        with self._errors(f"read the $edgeAgent twin of {device_id}"):
            twin = registry.get_module_twin(device_id, EDGE_AGENT)
        version = (twin.properties.desired or {}).get("$version")
        return int(version) if isinstance(version, int) else 0

    def create_deployment(
        self,
        deployment_id: str,
        manifest: Mapping[str, Any],
        *,
        target_condition: str,
        priority: int,
        labels: Mapping[str, str] | None = None,
        layered: bool = False,
        metrics: Mapping[str, str] | None = None,
    ) -> Deployment:
        content, _ = modules_content(manifest)
        if content is None:
            raise DeployError("the manifest has no modulesContent")
        if layered != is_layered(content):
            raise DeployError(
                "--layered needs a layered manifest (properties.desired.<path> keys)"
                if layered
                else "this manifest is layered (properties.desired.<path> keys); add --layered"
            )
        configs, _ = self._clients()
        from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

        configuration = Configuration(
            id=deployment_id,
            schema_version="1.0",
            labels=dict(labels or {}),
            content=ConfigurationContent(modules_content=content),
            target_condition=target_condition,
            priority=priority,
            metrics=ConfigurationMetrics(queries=dict(metrics)) if metrics else None,
        )
        with self._errors(f"create deployment {deployment_id}"):
            created = configs.create_configuration(configuration)
        log.info("deployment created", extra={"hub": self.hostname, "deployment_id": deployment_id})
        return Deployment(created.id, created.etag, created.target_condition, created.priority)

    def agent_report(self, device_id: str) -> AgentReport:
        _, registry = self._clients()
        with self._errors(f"read the $edgeAgent twin of {device_id}"):
            twin = registry.get_module_twin(device_id, EDGE_AGENT)
        return AgentReport.from_reported(twin.properties.reported or {})

    def watch(
        self,
        device_id: str,
        manifest: Mapping[str, Any],
        applied_version: int,
        *,
        timeout_s: float = 300.0,
        poll_s: float = 2.0,
        on_update: Callable[[AgentReport, Outcome], None] | None = None,
    ) -> Outcome:
        """Poll until the deployment succeeded or failed; a timeout is a failure naming what waited."""
        expected = expected_modules(manifest)
        deadline = time.monotonic() + timeout_s
        while True:
            report = self.agent_report(device_id)
            outcome = assess(report, expected, applied_version)
            if on_update is not None:
                on_update(report, outcome)
            if outcome.state != "pending":
                return outcome
            if time.monotonic() >= deadline:
                return Outcome("failed", f"timed out after {timeout_s:.0f}s: {outcome.reason}")
            time.sleep(poll_s)
