"""A module folder read back from disk, for ``build`` and ``push``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_toolkit.errors import PackagingError
from edge_toolkit.packager.plan import MODULE_JSON, PLAN_JSON
from edge_toolkit.packager.targets import PLATFORMS, REFUSED_PLATFORMS


@dataclass(frozen=True)
class ModuleModel:
    name: str
    version: int
    sha256: str


@dataclass(frozen=True)
class ModuleFolder:
    path: Path
    name: str
    target: str
    python_version: str
    repository: str
    version: str
    dockerfiles: dict[str, str]  # platform -> Dockerfile path relative to the folder
    models: tuple[ModuleModel, ...]

    @classmethod
    def load(cls, path: Path) -> ModuleFolder:
        path = path.resolve()
        module_json = _read_json(path / MODULE_JSON, path)
        plan_json = _read_json(path / PLAN_JSON, path)
        try:
            image = module_json["image"]
            return cls(
                path=path,
                name=str(plan_json["module"]),
                target=str(plan_json["target"]),
                python_version=str(plan_json["python_version"]),
                repository=str(image["repository"]),
                version=str(image["tag"]["version"]),
                dockerfiles={str(k): str(v) for k, v in image["tag"]["platforms"].items()},
                models=tuple(
                    ModuleModel(str(m["name"]), int(m["version"]), str(m["sha256"]))
                    for m in plan_json["models"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PackagingError(
                f"{path} has an unexpected module.json / {PLAN_JSON} ({exc!r}); run 'edgekit package' again"
            ) from exc

    def image_name(self, platform: str, repository: str | None = None) -> str:
        """The iotedgedev convention: ``{repository}:{version}-{platform}``."""
        return f"{repository or self.repository}:{self.version}-{platform}"

    def dockerfile(self, platform: str) -> str:
        if platform in REFUSED_PLATFORMS:
            raise PackagingError(f"platform {platform} is not supported: {REFUSED_PLATFORMS[platform]}")
        if platform not in self.dockerfiles:
            raise PackagingError(
                f"module {self.name} was packaged for {', '.join(self.dockerfiles)}, not {platform}; "
                f"run 'edgekit package … --platform {platform}'"
            )
        relative = self.dockerfiles[platform].removeprefix("./")
        if not (self.path / relative).is_file():
            raise PackagingError(f"{self.path / relative} is missing; run 'edgekit package' again")
        return relative

    def requirements(self, part: str) -> list[str]:
        """Requirement lines of ``part``: "agent" (the device agent's) or "user" (the script's)."""
        file = self.path / "requirements" / f"{part}.txt"
        if not file.is_file():
            return []
        return [
            x.strip() for x in file.read_text().splitlines() if x.strip() and not x.strip().startswith("#")
        ]

    @staticmethod
    def docker_platform(platform: str) -> str:
        return PLATFORMS[platform][0]


def _read_json(file: Path, folder: Path) -> dict[str, Any]:
    if not file.is_file():
        raise PackagingError(
            f"{folder} is not an edgekit module folder ({file.name} is missing); "
            "create one with 'edgekit package'"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise PackagingError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackagingError(f"{file} must hold a JSON object")
    return data
