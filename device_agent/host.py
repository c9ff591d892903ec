"""The seam between the serving core and the hub side of the agent.

The serving core (engine, model repository, inference service, HTTP front end) implements
:class:`ModelHost`; the hub side (transports, desired state, health, commands, MQTT inference)
uses only this protocol, so each can be built and tested with a fake of the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from device_agent.config import ModelConfig


@dataclass(frozen=True)
class ServedModel:
    """One model version as it is being served."""

    name: str
    version: str
    sha256: str | None
    providers: tuple[str, ...]  # the effective execution providers, in priority order
    # asked for in the config but not active: not offered by the runtime, or failed to initialise
    missing_providers: tuple[str, ...]
    ready: bool
    loaded_at: float  # time.time() when the session became ready
    inputs: tuple[dict[str, Any], ...] = ()  # [{"name", "datatype", "shape"}]
    outputs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ModelStats:
    """Counters of one model version since it was loaded."""

    name: str
    version: str
    requests: int  # every request that reached this version, answered or failed
    errors: int  # requests that failed inside the model (not client mistakes)
    client_errors: int  # requests refused as invalid (4xx)
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None
    queue_depth: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# Sees a loaded candidate model set before it is switched in; raises an AgentError to refuse it.
Acceptance = Callable[[Sequence[ServedModel]], None]


class ModelHost(Protocol):
    def served_models(self) -> list[ServedModel]:
        """Every model version being served now."""
        ...

    def stats(self) -> list[ModelStats]:
        """Per-model counters; cheap enough to call every health interval."""
        ...

    async def apply_models(
        self, models: Sequence[ModelConfig], accept: Acceptance | None = None
    ) -> list[ServedModel]:
        """Make ``models`` the served set: load and warm every new version first, then swap
        atomically (in-flight requests finish on the old sessions). On any failure raise
        ``ModelLoadError`` and keep serving the previous set unchanged.

        ``accept``, when given, sees the loaded candidate set before the switch and may refuse
        it by raising an ``AgentError`` (e.g. a changed signature): nothing is swapped then."""
        ...

    async def rollback(self) -> list[ServedModel]:
        """Go back to the model set served before the last successful ``apply_models``.
        Raises ``DesiredStateError`` when there is nothing to roll back to."""
        ...

    async def reload(self) -> list[ServedModel]:
        """Reload the current set from disk (new sessions, same files), swapping atomically."""
        ...

    async def infer_json(self, model: str, version: str | None, body: bytes) -> bytes:
        """Serve one Open Inference Protocol v2 JSON request (as over HTTP) and return the JSON
        response. Raises ``InvalidRequestError``, ``ModelNotFoundError`` or
        ``InferenceRuntimeError``."""
        ...
