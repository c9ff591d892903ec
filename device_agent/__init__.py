"""edge-agent: the on-device half of edge-toolkit.

Serves ONNX models through ONNX Runtime over HTTP and MQTT, takes desired state from a hub and
reports health. Nothing here imports ``edge_toolkit`` (the workspace side): a device image
carries only this package and its ``[agent]`` dependencies.
"""

__version__ = "0.1.0"
