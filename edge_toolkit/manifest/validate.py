"""Offline validation of a deployment manifest: JSON Schema, then the rules a schema cannot say.

Every problem is one line, `<JSON path>: <what is wrong>; <what to do>`. Rules:

- shape: `modulesContent` with `$edgeAgent` and `$edgeHub` `properties.desired` (or, for a layered
  deployment, property paths), checked against our schemas for `$edgeAgent` 1.0/1.1 and
  `$edgeHub` 1.0/1.1/1.2 (chosen by `schemaVersion`) or the layered schema: required fields, enum
  values (`status`, `restartPolicy`, `imagePullPolicy`), `startupOrder` range, env value types,
  route priority/TTL ranges, unknown (misspelled) fields;
- routes parse, and name modules that exist (and outputs/inputs that exist when the module's
  interface is known);
- module twins belong to declared modules;
- images are resolved (no `${MODULES…}` left);
- createOptions chunks are contiguous, ≤ 8, ≤ 512 UTF-8 bytes each, and join into a JSON object;
- IoT Hub twin limits: a string value ≤ 4 KB, a key ≤ 1 KB without `.`, `$`, spaces or control
  characters, nesting ≤ 10 levels, one twin's desired properties ≤ 32 KB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import create_options, placeholders, routes
from edge_toolkit.manifest.document import DESIRED, EDGE_AGENT, EDGE_HUB, is_layered, modules_content

AGENT_VERSIONS = ("1.0", "1.1")
HUB_VERSIONS = ("1.0", "1.1", "1.2")
MAX_STRING_BYTES = 4 * 1024
MAX_KEY_BYTES = 1024
MAX_DEPTH = 10
MAX_TWIN_DESIRED_BYTES = 32 * 1024
_BAD_KEY = re.compile(r"[.$ \x00-\x1f]")

_HINTS = {
    "enum": "use one of the listed values",
    "const": "use the value shown",
    "required": "add it",
    "additionalProperties": "remove it or fix its spelling",
    "type": "change the value's type",
    "minimum": "use a value in range",
    "maximum": "use a value in range",
    "pattern": "rename it",
    "minLength": "set a value",
    "oneOf": "write a route string or {route, priority 0-9, timeToLiveSecs}",
}


@dataclass(frozen=True)
class ModuleInterface:
    """The inputs and outputs a module is known to have (from its module.json `edgekit` key)."""

    inputs: frozenset[str] = field(default_factory=frozenset)
    outputs: frozenset[str] = field(default_factory=frozenset)


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("edge_toolkit.manifest").joinpath("schemas", f"{name}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Any, interfaces: Mapping[str, ModuleInterface] | None = None) -> list[str]:
    """Every problem of the manifest (empty when it is valid)."""
    content, base = modules_content(document)
    if content is None:
        return [f'{base}: missing; a manifest is {{"modulesContent": {{"$edgeAgent": …, "$edgeHub": …}}}}']
    if is_layered(content):
        return _validate_layered(content, base)
    return _validate_full(content, base, interfaces or {})


def check(document: Any, interfaces: Mapping[str, ModuleInterface] | None = None) -> None:
    """Raise ManifestError listing every problem, if any."""
    problems = validate(document, interfaces)
    if problems:
        raise ManifestError(f"the manifest has {len(problems)} problem(s)", problems)


# full deployments -------------------------------------------------------------------------------
def _validate_full(
    content: dict[str, Any], base: str, interfaces: Mapping[str, ModuleInterface]
) -> list[str]:
    problems: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    kinds = ((EDGE_AGENT, AGENT_VERSIONS, "edgeagent"), (EDGE_HUB, HUB_VERSIONS, "edgehub"))
    for key, versions, prefix in kinds:
        path = f"{base}.{key}.{DESIRED}"
        section = content.get(key)
        desired = section.get(DESIRED) if isinstance(section, dict) else None
        if not isinstance(desired, dict):
            problems.append(f'{path}: missing; add the {key} module twin as {{"{DESIRED}": {{…}}}}')
            continue
        if isinstance(section, dict) and len(section) > 1:
            extra = ", ".join(sorted(k for k in section if k != DESIRED))
            problems.append(f"{base}.{key}: unexpected keys {extra}; only {DESIRED!r} is allowed here")
        version = desired.get("schemaVersion")
        if version not in versions:
            problems.append(
                f"{path}.schemaVersion: {version!r} is not supported; use one of {', '.join(versions)}"
            )
            continue
        problems.extend(_schema_problems(desired, schema(f"{prefix}-{version}"), path))
        sections[key] = desired

    agent = sections.get(EDGE_AGENT, {})
    declared = set(agent.get("modules") or {}) if isinstance(agent.get("modules"), dict) else set()
    for key, twin in content.items():
        if key in (EDGE_AGENT, EDGE_HUB):
            continue
        path = f"{base}.{key}"
        if EDGE_AGENT in sections and key not in declared:
            problems.append(
                f"{path}: a twin for module {key!r}, which $edgeAgent does not declare; add the module "
                "or remove the twin"
            )
        if not isinstance(twin, dict) or set(twin) != {DESIRED} or not isinstance(twin[DESIRED], dict):
            problems.append(f'{path}: a module twin must be {{"{DESIRED}": {{…}}}}')
    hub = sections.get(EDGE_HUB)
    if hub is not None and EDGE_AGENT in sections:
        problems.extend(
            _route_problems(
                hub.get("routes") or {}, f"{base}.{EDGE_HUB}.{DESIRED}.routes", declared, interfaces
            )
        )
    problems.extend(_settings_problems(content, base))
    problems.extend(_twin_limit_problems(content, base))
    return problems


def _validate_layered(content: dict[str, Any], base: str) -> list[str]:
    problems = _schema_problems(content, schema("layered"), base)
    hub = content.get(EDGE_HUB)
    if isinstance(hub, dict):
        prefix = f"{DESIRED}.routes."
        layer_routes = {k[len(prefix) :]: v for k, v in hub.items() if k.startswith(prefix)}
        # A layer may route to modules declared by the base deployment: module names are not checked.
        problems.extend(_route_problems(layer_routes, f"{base}.{EDGE_HUB}.{prefix[:-1]}", None, {}))
    problems.extend(_settings_problems(content, base))
    problems.extend(_twin_limit_problems(content, base))
    return problems


# pieces -----------------------------------------------------------------------------------------
def _schema_problems(instance: Any, schema_doc: dict[str, Any], path: str) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema_doc)
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        where = path
        for part in error.absolute_path:
            where = placeholders.join_path(where, part)
        hint = _HINTS.get(str(error.validator))
        problems.append(f"{where}: {error.message}" + (f"; {hint}" if hint else ""))
    return problems


def _route_problems(
    route_map: Any,
    path: str,
    declared: set[str] | None,
    interfaces: Mapping[str, ModuleInterface],
) -> list[str]:
    problems: list[str] = []
    if not isinstance(route_map, dict):
        return problems
    for name, value in route_map.items():
        where = placeholders.join_path(path, name)
        text = value.get("route") if isinstance(value, dict) else value
        if not isinstance(text, str):
            continue  # the schema already reported it
        try:
            route = routes.parse(text)
        except routes.RouteSyntaxError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if declared is None:
            continue
        for module, kind, port, ports_of in (
            (route.source_module, "output", route.source_output, "outputs"),
            (route.sink_module, "input", route.sink_input, "inputs"),
        ):
            if module is None:
                continue
            if module not in declared:
                known = ", ".join(sorted(declared)) or "none"
                problems.append(
                    f"{where}: names module {module!r}, which $edgeAgent does not declare "
                    f"(modules: {known}); fix the route or add the module"
                )
                continue
            interface = interfaces.get(module)
            ports: frozenset[str] = getattr(interface, ports_of) if interface else frozenset()
            if interface and port not in (None, "*") and port not in ports:
                problems.append(
                    f"{where}: module {module!r} has no {kind} {port!r} (it has: "
                    f"{', '.join(sorted(ports)) or 'none'}); fix the route"
                )
    return problems


def _settings_problems(content: dict[str, Any], base: str) -> list[str]:
    from edge_toolkit.manifest.document import module_settings

    problems: list[str] = []
    for settings, full_path in module_settings({"modulesContent": content}):
        path = full_path.replace("modulesContent", base, 1)
        image = settings.get("image")
        if isinstance(image, str) and "${MODULES." in image:
            problems.append(f"{path}.image: {image} is a template placeholder; run 'edgekit manifest gen'")
        try:
            text = create_options.merge(settings, path)
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        if text is None:
            continue
        keys = create_options.chunk_keys(settings)
        for key in keys:
            size = len(str(settings[key]).encode("utf-8"))
            if size > create_options.CHUNK_BYTES:
                problems.append(
                    f"{path}.{key}: {size} bytes; each createOptions chunk holds at most "
                    f"{create_options.CHUNK_BYTES}: run 'edgekit manifest gen' to split it"
                )
        if len(keys) > create_options.MAX_CHUNKS:
            problems.append(f"{path}: {len(keys)} createOptions chunks; IoT Edge reads at most 8")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}.createOptions: not valid JSON when joined ({exc.msg} at {exc.pos})")
            continue
        if not isinstance(parsed, dict):
            problems.append(f"{path}.createOptions: must encode a JSON object of Docker create options")
    return problems


def _twin_limit_problems(content: dict[str, Any], base: str) -> list[str]:
    problems: list[str] = []
    for twin_name, section in content.items():
        if not isinstance(section, dict):
            continue
        size = len(json.dumps(section, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_TWIN_DESIRED_BYTES:
            problems.append(
                f"{base}.{twin_name}: desired properties are {size} bytes; IoT Hub allows "
                f"{MAX_TWIN_DESIRED_BYTES} per twin: move data out of the twin"
            )
        for key, value in section.items():
            # The keys of this level are property paths (`properties.desired…`), dots allowed.
            _walk_twin(value, f"{base}.{twin_name}.{key}", 1, problems)
    return problems


def _walk_twin(node: Any, path: str, depth: int, problems: list[str]) -> None:
    if isinstance(node, dict):
        if depth > MAX_DEPTH:
            problems.append(f"{path}: nested {depth} levels deep; IoT Hub twins allow {MAX_DEPTH}")
            return
        for key, value in node.items():
            where = placeholders.join_path(path, key)
            if _BAD_KEY.search(key) or len(key.encode("utf-8")) > MAX_KEY_BYTES:
                problems.append(
                    f"{where}: twin property names may not contain '.', '$', spaces or control characters "
                    f"and are at most {MAX_KEY_BYTES} bytes; rename it"
                )
            _walk_twin(value, where, depth + 1, problems)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk_twin(value, placeholders.join_path(path, index), depth + 1, problems)
    elif isinstance(node, str) and len(node.encode("utf-8")) > MAX_STRING_BYTES:
        problems.append(
            f"{path}: {len(node.encode('utf-8'))} bytes; IoT Hub allows {MAX_STRING_BYTES} per string value"
        )
