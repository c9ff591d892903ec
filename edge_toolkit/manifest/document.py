"""Navigating a deployment document: where modulesContent is, and whether it is layered.

A manifest is `{"modulesContent": {...}}`; a configuration file for a fleet may wrap it as
`{"content": {"modulesContent": {...}}}`. A layered deployment's `$edgeAgent` / `$edgeHub` keys are
property paths (`properties.desired.modules.x`) instead of one `properties.desired` object.
"""

from __future__ import annotations

from typing import Any

EDGE_AGENT = "$edgeAgent"
EDGE_HUB = "$edgeHub"
DESIRED = "properties.desired"
SYSTEM_KEYS = (EDGE_AGENT, EDGE_HUB)


def modules_content(document: Any) -> tuple[dict[str, Any] | None, str]:
    """(modulesContent, its JSON path) or (None, expected path) when absent."""
    if isinstance(document, dict):
        content = document.get("modulesContent")
        if isinstance(content, dict):
            return content, "modulesContent"
        wrapper = document.get("content")
        if isinstance(wrapper, dict) and isinstance(wrapper.get("modulesContent"), dict):
            return wrapper["modulesContent"], "content.modulesContent"
    return None, "modulesContent"


def is_layered(content: dict[str, Any]) -> bool:
    """Layered deployments set properties by path and never the whole desired object."""
    for key in SYSTEM_KEYS:
        section = content.get(key)
        if isinstance(section, dict) and any(k.startswith(DESIRED + ".") for k in section):
            return True
    return False


def module_settings(document: Any) -> list[tuple[dict[str, Any], str]]:
    """(settings object, JSON path) of every module the $edgeAgent section declares."""
    found: list[tuple[dict[str, Any], str]] = []
    content, base = modules_content(document)
    agent = content.get(EDGE_AGENT) if content is not None else None
    if not isinstance(agent, dict):
        return found
    for key, section in agent.items():
        path = f"{base}.{EDGE_AGENT}.{key}"
        if key == DESIRED and isinstance(section, dict):
            for group in ("systemModules", "modules"):
                modules = section.get(group)
                if isinstance(modules, dict):
                    for name, module in modules.items():
                        if isinstance(module, dict) and isinstance(module.get("settings"), dict):
                            found.append((module["settings"], f"{path}.{group}.{name}.settings"))
        elif (
            (key.startswith(f"{DESIRED}.modules.") or key.startswith(f"{DESIRED}.systemModules."))
            and isinstance(section, dict)
            and isinstance(section.get("settings"), dict)
        ):
            found.append((section["settings"], f"{path}.settings"))
    return found
