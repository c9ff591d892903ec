"""The agent's side of the hub: one :class:`~device_agent.hub.transport.Transport` interface,
its implementations (plain MQTT, IoT Hub / IoT Edge, console) and the supervisor that runs
health reporting, desired state and commands over whichever is configured.

Heavy dependencies (paho-mqtt, azure-iot-device) are imported only by the transport that needs
them, so ``import device_agent.hub`` is cheap.
"""

from device_agent.hub.transport import CommandRequest, InferenceRequest, Telemetry, Transport

__all__ = ["CommandRequest", "InferenceRequest", "Telemetry", "Transport"]
