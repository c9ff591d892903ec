"""Judging a deployment from the `$edgeAgent` reported properties. Pure.

The IoT Edge agent reports `lastDesiredVersion` (the desired `$version` it acted on),
`lastDesiredStatus.code` (200 when it accepted the deployment; 400, 406, 412, 417, 500 otherwise)
and a `runtimeStatus` per module (unknown, backoff, running, unhealthy, stopped, failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_toolkit.manifest.document import DESIRED, EDGE_AGENT, modules_content

State = Literal["pending", "succeeded", "failed"]


@dataclass(frozen=True)
class ModuleState:
    name: str
    runtime_status: str
    exit_code: int | None = None
    description: str = ""


@dataclass(frozen=True)
class AgentReport:
    last_desired_version: int | None
    code: int | None
    description: str
    modules: Mapping[str, ModuleState] = field(default_factory=dict)

    @classmethod
    def from_reported(cls, reported: Mapping[str, Any]) -> AgentReport:
        last = reported.get("lastDesiredStatus") or {}
        modules: dict[str, ModuleState] = {}
        for group in ("systemModules", "modules"):
            for name, module in (reported.get(group) or {}).items():
                if isinstance(module, Mapping):
                    modules[name] = ModuleState(
                        name,
                        str(module.get("runtimeStatus", "unknown")),
                        module.get("exitCode"),
                        str(module.get("statusDescription") or ""),
                    )
        version = reported.get("lastDesiredVersion")
        return cls(
            last_desired_version=version if isinstance(version, int) else None,
            code=last.get("code") if isinstance(last, Mapping) else None,
            description=str(last.get("description") or "") if isinstance(last, Mapping) else "",
            modules=modules,
        )


@dataclass(frozen=True)
class Outcome:
    state: State
    reason: str


def expected_modules(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Module name → the status the manifest asks for (system modules always run)."""
    content, _ = modules_content(manifest)
    desired = ((content or {}).get(EDGE_AGENT) or {}).get(DESIRED) or {}
    expected = {name: "running" for name in desired.get("systemModules") or {}}
    for name, module in (desired.get("modules") or {}).items():
        expected[name] = str(module.get("status", "running")) if isinstance(module, Mapping) else "running"
    return expected


def assess(report: AgentReport, expected: Mapping[str, str], applied_version: int) -> Outcome:
    if report.last_desired_version is None or report.last_desired_version < applied_version:
        seen = report.last_desired_version
        return Outcome(
            "pending", f"the agent has not acted on desired version {applied_version} yet (at {seen})"
        )
    if report.code is not None and report.code != 200:
        return Outcome(
            "failed", f"the IoT Edge agent refused the deployment ({report.code}): {report.description}"
        )
    waiting = []
    for name, wanted in expected.items():
        module = report.modules.get(name)
        if module is None:
            waiting.append(f"{name}: not reported yet")
            continue
        if module.runtime_status == "failed":
            detail = f", exit code {module.exit_code}" if module.exit_code is not None else ""
            return Outcome("failed", f"module {name} failed{detail} {module.description}".rstrip())
        if module.runtime_status != wanted:
            waiting.append(f"{name}: {module.runtime_status} (want {wanted})")
    if waiting:
        return Outcome("pending", "; ".join(waiting))
    return Outcome("succeeded", f"{len(expected)} module(s) as desired")
