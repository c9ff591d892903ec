"""The state of a local IoT Hub stand-in: devices, module identities, twins, configurations.

Test code. One `TwinStore` is shared by the stand-in's front ends (the HTTPS service API in
`service.py`, the device MQTT endpoint in `mqtt_server.py`, the IoT Edge workload API in
`workload.py`), so that a change made through one is seen through the others, as on a real hub.
Thread-safe: each front end runs its own threads.
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (device_id, module_id or None, patch, new desired $version)
DesiredListener = Callable[[str, str | None, dict[str, Any], int], None]
# (device_id, module_id or None, method name, payload, timeout s) -> (status, payload)
MethodHandler = Callable[[str, str | None, str, Any, float], tuple[int, Any]]

Identity = tuple[str, str | None]


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a twin patch in place: nested objects merge, `null` deletes (IoT Hub's rule)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@dataclass
class Twin:
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 1
    reported_version: int = 1

    def document(self, device_id: str, module_id: str | None) -> dict[str, Any]:
        """The service API's view of the twin."""
        doc: dict[str, Any] = {
            "deviceId": device_id,
            "etag": f"AAAAAAAAAA{self.desired_version}=",
            "version": self.desired_version + self.reported_version,
            "tags": copy.deepcopy(self.tags),
            "properties": {
                "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
                "reported": {**copy.deepcopy(self.reported), "$version": self.reported_version},
            },
        }
        if module_id is not None:
            doc["moduleId"] = module_id
        return doc


@dataclass
class Device:
    device_id: str
    key: str  # base64 symmetric key (primary)
    edge_enabled: bool = False
    module_keys: dict[str, str] = field(default_factory=dict)


class TwinStore:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self._lock = threading.RLock()
        self.devices: dict[str, Device] = {}
        self.twins: dict[Identity, Twin] = {}
        self.configurations: dict[str, dict[str, Any]] = {}
        # Every telemetry message received: (device, module, payload bytes, properties).
        self.telemetry: list[tuple[str, str | None, bytes, dict[str, str]]] = []
        self._desired_listeners: list[DesiredListener] = []
        self._method_handler: MethodHandler | None = None
        self.telemetry_event = threading.Condition(self._lock)

    # identities ---------------------------------------------------------------------------
    def add_device(self, device_id: str, edge_enabled: bool = False) -> Device:
        with self._lock:
            device = Device(device_id, base64.b64encode(secrets.token_bytes(32)).decode(), edge_enabled)
            self.devices[device_id] = device
            self.twins[(device_id, None)] = Twin()
            return device

    def add_module(self, device_id: str, module_id: str) -> str:
        with self._lock:
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            self.devices[device_id].module_keys[module_id] = key
            self.twins[(device_id, module_id)] = Twin()
            return key

    def key_for(self, device_id: str, module_id: str | None) -> str | None:
        with self._lock:
            device = self.devices.get(device_id)
            if device is None:
                return None
            return device.key if module_id is None else device.module_keys.get(module_id)

    def connection_string(
        self, device_id: str, module_id: str | None = None, gateway: str | None = None
    ) -> str:
        key = self.key_for(device_id, module_id)
        parts = [f"HostName={self.hostname}", f"DeviceId={device_id}"]
        if module_id:
            parts.append(f"ModuleId={module_id}")
        parts.append(f"SharedAccessKey={key}")
        if gateway:
            parts.append(f"GatewayHostName={gateway}")
        return ";".join(parts)

    # twins --------------------------------------------------------------------------------
    def twin(self, device_id: str, module_id: str | None = None) -> Twin:
        with self._lock:
            return self.twins[(device_id, module_id)]

    def patch_desired(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> int:
        with self._lock:
            twin = self.twins[(device_id, module_id)]
            merge_patch(twin.desired, patch)
            twin.desired_version += 1
            version = twin.desired_version
            listeners = list(self._desired_listeners)
        for listener in listeners:
            listener(device_id, module_id, copy.deepcopy(patch), version)
        return version

    def replace_desired(self, device_id: str, module_id: str | None, desired: dict[str, Any]) -> int:
        """Set the whole desired section (applyConfigurationContent does this per module)."""
        with self._lock:
            twin = self.twins.setdefault((device_id, module_id), Twin())
            removed = {k: None for k in twin.desired if k not in desired}
            twin.desired = copy.deepcopy(desired)
            twin.desired_version += 1
            version = twin.desired_version
            listeners = list(self._desired_listeners)
        for listener in listeners:
            listener(device_id, module_id, {**removed, **copy.deepcopy(desired)}, version)
        return version

    def patch_reported(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> int:
        with self._lock:
            twin = self.twins[(device_id, module_id)]
            merge_patch(twin.reported, patch)
            twin.reported_version += 1
            return twin.reported_version

    def on_desired_patch(self, listener: DesiredListener) -> None:
        with self._lock:
            self._desired_listeners.append(listener)

    # telemetry ----------------------------------------------------------------------------
    def add_telemetry(
        self, device_id: str, module_id: str | None, payload: bytes, properties: dict[str, str]
    ) -> None:
        with self.telemetry_event:
            self.telemetry.append((device_id, module_id, payload, properties))
            self.telemetry_event.notify_all()

    # direct methods -----------------------------------------------------------------------
    def set_method_handler(self, handler: MethodHandler) -> None:
        """Installed by the MQTT front end: forwards a method call to the connected client."""
        self._method_handler = handler

    def invoke_method(
        self, device_id: str, module_id: str | None, name: str, payload: Any, timeout: float
    ) -> tuple[int, Any]:
        if self._method_handler is None:
            return 404, {"message": f"device {device_id} is not connected"}
        return self._method_handler(device_id, module_id, name, payload, timeout)
