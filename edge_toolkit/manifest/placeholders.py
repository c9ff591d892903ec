"""Placeholder and variable resolution in deployment templates. Pure: no environment access.

Forms, as IoT Edge templates use them:

- ``${MODULES.<name>}`` / ``${MODULES.<name>.<platform>}``: a module's image;
- ``${VAR}``: any variable name;
- ``$VAR``: a bare variable, only in the environment-variable convention ``[A-Z_][A-Z0-9_]*``
  (e.g. ``$CONTAINER_REGISTRY_USERNAME``).

IoT Edge's own ``$`` syntax is never touched, even when a variable of that name exists: object
keys are never substituted (``$edgeAgent``, ``$edgeHub``, ``$schema-template``) and route strings
(``FROM /messages/* INTO $upstream``) are left alone apart from the braced form. The bare form is
upper-case only so that lower-case IoT Edge words such as ``$upstream`` can never match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODULES_PREFIX = "MODULES."
_BRACED = re.compile(r"\$\{([^}]*)\}")
_BARE = re.compile(r"(?<![\w$])\$([A-Z_][A-Z0-9_]*)(?![\w{])")
_TOKEN = re.compile(_BRACED.pattern + "|" + _BARE.pattern)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_REF = re.compile(r"^MODULES\.([A-Za-z0-9_.-]+?)(?:\.(amd64|arm64v8|arm32v7|windows-amd64))?$")
_ROUTE = re.compile(r"^\s*FROM\s", re.IGNORECASE)

# (name) -> the value, or None when unknown
Lookup = Callable[[str], str | None]


@dataclass(frozen=True)
class Reference:
    """One placeholder occurrence: where it is, how it was written and the name it refers to."""

    path: str
    written: str
    name: str

    @property
    def is_module(self) -> bool:
        return self.name.startswith(MODULES_PREFIX)


@dataclass(frozen=True)
class ModuleRef:
    module: str
    platform: str | None


def parse_module_ref(name: str) -> ModuleRef | None:
    """`MODULES.x` → (x, None); `MODULES.x.arm64v8` → (x, arm64v8); anything else → None."""
    match = _MODULE_REF.match(name)
    if match is None:
        return None
    return ModuleRef(match.group(1), match.group(2))


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def is_route(path: str, text: str) -> bool:
    """Route strings are IoT Edge syntax; `$upstream` in them is not a variable."""
    return ".routes." in f".{path}." or bool(_ROUTE.match(text))


def find(document: Any, path: str = "") -> list[Reference]:
    """Every placeholder in the document's string values, in document order."""
    found: list[Reference] = []

    def collect(string_path: str, text: str) -> str:
        found.extend(_references(string_path, text))
        return text

    _walk(document, path, collect)
    return found


def substitute(
    document: Any,
    lookup: Lookup,
    keep: Callable[[str], bool] = lambda _: False,
    path: str = "",
    bare: bool = True,
) -> tuple[Any, list[Reference]]:
    """A copy of `document` with placeholders replaced, and the references left unresolved.

    Names for which `keep(name)` is true stay in the output as `${NAME}` references (secrets),
    and are not reported as unresolved. `bare=False` replaces only the braced form (a generated
    manifest holds no bare variables; a `$X` left in one is the user's literal text).
    """
    missing: list[Reference] = []

    def replace_in(string_path: str, text: str) -> str:
        pattern = _BRACED if not bare or is_route(string_path, text) else _TOKEN

        def one(match: re.Match[str]) -> str:
            name = match.group(1) if match.group(1) is not None else match.group(2)
            if keep(name):
                return "${" + name + "}"
            value = lookup(name) if _valid(name) else None
            if value is None:
                missing.append(Reference(string_path, match.group(0), name))
                return match.group(0)
            return value

        return pattern.sub(one, text)

    return _walk(document, path, replace_in), missing


def _valid(name: str) -> bool:
    return bool(_NAME.match(name)) or parse_module_ref(name) is not None


def _references(path: str, text: str) -> list[Reference]:
    pattern = _BRACED if is_route(path, text) else _TOKEN
    return [
        Reference(path, m.group(0), m.group(1) if m.group(1) is not None else m.group(2))
        for m in pattern.finditer(text)
    ]


def _walk(node: Any, path: str, on_string: Callable[[str, str], Any]) -> Any:
    if isinstance(node, dict):
        return {key: _walk(value, join_path(path, key), on_string) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, join_path(path, i), on_string) for i, value in enumerate(node)]
    if isinstance(node, str):
        return on_string(path, node)
    return node
