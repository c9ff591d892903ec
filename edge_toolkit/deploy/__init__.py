"""Deploying manifests: to one IoT Edge device or a fleet through IoT Hub (`iothub`), or to
plain-MQTT agents as a retained desired state (`mqtt`); `history` keeps what was deployed where,
so a failed deployment can be rolled back; `status` judges the `$edgeAgent` reported state.
"""
