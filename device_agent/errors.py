"""Exceptions raised by the device agent.

    AgentError                      base of everything the agent raises on purpose
    ├── ConfigError                 the agent config (file, flags or desired state) is invalid
    ├── ModelLoadError              a model file cannot be read, verified or loaded by ONNX Runtime
    ├── InferenceError              a request could not be served
    │   ├── InvalidRequestError     the request is malformed (bad JSON, tensor name/shape/type …)
    │   ├── ModelNotFoundError      no such model or version is being served
    │   └── InferenceRuntimeError ONNX Runtime rejected a request that looked valid
    ├── HubError                    talking to the hub (IoT Hub, MQTT broker) failed
    └── DesiredStateError           a desired state could not be applied (the old one keeps serving)

Front ends map these to their own status codes; the core never knows about HTTP or MQTT.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The agent config is invalid; the message names the field and the fix."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"config field '{field}': {problem}")


class ModelLoadError(AgentError):
    """A model could not be downloaded, verified or loaded."""


class InferenceError(AgentError):
    """A request could not be served."""


class InvalidRequestError(InferenceError):
    """The request is malformed; the client can fix it."""


class ModelNotFoundError(InferenceError):
    """No such model (or version) is being served."""


class InferenceRuntimeError(InferenceError):
    """ONNX Runtime failed on a request that passed validation."""


class HubError(AgentError):
    """Talking to the hub failed."""


class DesiredStateError(AgentError):
    """A desired state could not be applied; the previous state keeps serving."""
