"""Reading templates, manifests and the solution's `modules/<name>/module.json` files.

Modules are found as the IoT Edge tooling finds them: each sub-folder of `modules/` (next to the
template unless told otherwise) that holds a `module.json` is a module keyed by its folder name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import placeholders
from edge_toolkit.manifest.validate import ModuleInterface

log = logging.getLogger(__name__)

DEFAULT_PLATFORM = "amd64"


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; in a manifest that hides a module or route.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(f"the key {key!r} appears twice in one object; keep one")
        seen[key] = value
    return seen


def parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise ManifestError(f"{source} is not a usable JSON document", [str(exc)]) from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{source} is not valid JSON",
            [f"line {exc.lineno} column {exc.colno}: {exc.msg}"],
        ) from exc


def load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_json(text, str(path))


@dataclass(frozen=True)
class ModuleInfo:
    """A solution module as module.json describes it."""

    name: str
    folder: Path
    repository: str
    version: str
    platforms: Mapping[str, str]
    interface: ModuleInterface | None = None

    def image(self, platform: str) -> str:
        if platform not in self.platforms:
            raise ManifestError(
                f"module {self.name} has no {platform} image",
                [
                    f"{self.folder / 'module.json'}: image.tag.platforms lists "
                    f"{', '.join(sorted(self.platforms)) or 'nothing'}; add {platform} or pick another "
                    "--platform"
                ],
            )
        return f"{self.repository}:{self.version}-{platform}"


def load_module(folder: Path, variables: Mapping[str, str]) -> ModuleInfo:
    """Read one module.json; `${VAR}` in the repository (e.g. the registry server) is resolved."""
    path = folder / "module.json"
    data = load_json(path)
    problems: list[str] = []
    image = data.get("image") if isinstance(data, dict) else None
    tag = image.get("tag") if isinstance(image, dict) else None
    repository = image.get("repository") if isinstance(image, dict) else None
    version = tag.get("version") if isinstance(tag, dict) else None
    platforms = tag.get("platforms") if isinstance(tag, dict) else None
    if not isinstance(repository, str) or not repository:
        problems.append(f"{path}: image.repository must be a non-empty string")
    if not isinstance(version, str) or not version:
        problems.append(f"{path}: image.tag.version must be a non-empty string")
    if not isinstance(platforms, dict):
        problems.append(f"{path}: image.tag.platforms must map platforms to Dockerfiles")
    if problems:
        raise ManifestError(f"module {folder.name} is misdescribed", problems)
    assert isinstance(repository, str) and isinstance(version, str) and isinstance(platforms, dict)
    resolved, missing = placeholders.substitute(
        {"repository": repository, "version": version}, variables.get, path=str(path)
    )
    if missing:
        raise ManifestError(
            f"module {folder.name} uses variables that are not set",
            [f"{r.path}: {r.written} is not set; export {r.name} or add it to the env file" for r in missing],
        )
    return ModuleInfo(
        name=folder.name,
        folder=folder,
        repository=resolved["repository"],
        version=resolved["version"],
        platforms={str(k): str(v) for k, v in platforms.items()},
        interface=_interface(data.get("edgekit")),
    )


def _interface(section: Any) -> ModuleInterface | None:
    """module.json's optional `edgekit: {inputs, outputs}`: lets validation check route ports."""
    if not isinstance(section, dict) or not ("inputs" in section or "outputs" in section):
        return None
    return ModuleInterface(
        inputs=frozenset(str(i) for i in section.get("inputs") or ()),
        outputs=frozenset(str(o) for o in section.get("outputs") or ()),
    )


def find_modules(modules_dir: Path, variables: Mapping[str, str]) -> dict[str, ModuleInfo]:
    """Every `<modules_dir>/<name>/module.json`, keyed by folder name (none when no folder)."""
    if not modules_dir.is_dir():
        return {}
    found = {
        folder.name: load_module(folder, variables)
        for folder in sorted(modules_dir.iterdir())
        if (folder / "module.json").is_file()
    }
    log.debug("modules found", extra={"modules_dir": str(modules_dir), "modules": sorted(found)})
    return found
