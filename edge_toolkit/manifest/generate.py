"""`deployment.template.json` → a deployment manifest (a value first; writing it is separate).

Steps: read the template and the modules' module.json; substitute `${MODULES…}` images and
variables (secrets stay `${NAME}` references unless inlined); turn createOptions objects into
chunked strings; drop `$schema-template`; validate. Nothing is written unless every step passed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import create_options, placeholders, secrets, validate
from edge_toolkit.manifest.document import module_settings
from edge_toolkit.manifest.template import DEFAULT_PLATFORM, ModuleInfo, find_modules, load_json
from edge_toolkit.manifest.variables import variables

__all__ = ["GeneratedManifest", "build", "default_output", "find_modules", "generate", "write"]

if TYPE_CHECKING:
    from edge_toolkit.workspace import Workspace

log = logging.getLogger(__name__)

SCHEMA_TEMPLATE_KEY = "$schema-template"


@dataclass
class GeneratedManifest:
    document: dict[str, Any]
    platform: str
    modules: dict[str, str] = field(default_factory=dict)  # module name → image written
    secret_refs: list[str] = field(default_factory=list)  # names left as ${NAME}
    inlined_secrets: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"


def default_output(template: Path, platform: str) -> Path:
    """Where the IoT Edge tooling writes it: `config/deployment.<platform>.json` beside the template."""
    stem = template.name.replace(".template.json", "").replace(".json", "")
    return template.parent / "config" / f"{stem}.{platform}.json"


def generate(
    template: Path,
    *,
    platform: str = DEFAULT_PLATFORM,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    modules_dir: Path | None = None,
    secret_names: Iterable[str] = (),
    inline_secrets: bool = False,
    pin_digests: bool = False,
    workspace: Workspace | None = None,
) -> GeneratedManifest:
    """Build the manifest for `platform` from `template`; raise ManifestError listing every problem.

    `env_file` defaults to `.env` beside the template when one exists.
    """
    if env_file is None and (template.parent / ".env").is_file():
        env_file = template.parent / ".env"
    values = variables(env_file, environ)
    modules = find_modules(modules_dir or template.parent / "modules", values)
    document = load_json(template)
    if not isinstance(document, dict):
        raise ManifestError(f"{template} must hold a JSON object with modulesContent")
    return build(
        document,
        modules=modules,
        values=values,
        platform=platform,
        secret_names=secret_names,
        inline_secrets=inline_secrets,
        pin_digests=pin_digests,
        workspace=workspace,
    )


def build(
    template: Mapping[str, Any],
    *,
    modules: Mapping[str, ModuleInfo],
    values: Mapping[str, str],
    platform: str = DEFAULT_PLATFORM,
    secret_names: Iterable[str] = (),
    inline_secrets: bool = False,
    pin_digests: bool = False,
    workspace: Workspace | None = None,
) -> GeneratedManifest:
    """The pure core of `generate`: template document + modules + variables → manifest."""
    document = copy.deepcopy(dict(template))
    document.pop(SCHEMA_TEMPLATE_KEY, None)
    is_secret = secrets.secret_predicate(secret_names)
    images: dict[str, str] = {}
    problems: list[str] = []

    def lookup(name: str) -> str | None:
        ref = placeholders.parse_module_ref(name)
        if ref is None:
            return values.get(name)
        module = modules.get(ref.module)
        if module is None:
            return None
        wanted = ref.platform or platform
        try:
            image = _pinned(module, wanted, workspace) if pin_digests else module.image(wanted)
        except ManifestError as exc:
            problems.extend(exc.problems or [str(exc)])
            return name  # reported through `problems`
        images[ref.module] = image
        return image

    keep = (lambda _name: False) if inline_secrets else is_secret
    resolved, missing = placeholders.substitute(document, lookup, keep=keep)
    if problems:
        raise ManifestError("cannot resolve module images", problems)
    if missing:
        raise ManifestError(
            f"{len(missing)} placeholder(s) or variable(s) are not resolved",
            [_explain(r, modules) for r in missing],
        )
    for settings, path in module_settings(resolved):
        create_options.apply_to_settings(settings, path)
    used = [r.name for r in placeholders.find(document) if not r.is_module and is_secret(r.name)]
    result = GeneratedManifest(resolved, platform, images)
    if inline_secrets:
        result.inlined_secrets = sorted(set(used))
        if used:
            log.warning(
                "secrets written inline into the manifest; do not commit it",
                extra={"secrets": result.inlined_secrets},
            )
    else:
        result.secret_refs = sorted(set(used))
    validate.check(resolved, {name: m.interface for name, m in modules.items() if m.interface})
    return result


def write(manifest: GeneratedManifest, output: Path) -> Path:
    """Write atomically (a reader never sees half a manifest)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, output)
    return output


def _explain(ref: placeholders.Reference, modules: Mapping[str, ModuleInfo]) -> str:
    module_ref = placeholders.parse_module_ref(ref.name)
    if ref.is_module and module_ref is not None:
        known = ", ".join(sorted(modules)) or "none found"
        return (
            f"{ref.path}: {ref.written} names module {module_ref.module!r}, which has no module.json "
            f"(modules: {known}); check --modules-dir"
        )
    if ref.is_module:
        return (
            f"{ref.path}: {ref.written} is malformed; "
            "write ${MODULES.<name>} or ${MODULES.<name>.<platform>}"
        )
    return f"{ref.path}: {ref.written} is not set; export {ref.name} or add it to the env file"


def _pinned(module: ModuleInfo, platform: str, workspace: Workspace | None) -> str:
    """The image by the digest recorded when it was pushed (``edgekit push``)."""
    module.image(platform)  # the platform must exist either way
    if workspace is None:
        raise ManifestError("--pin-digests needs a workspace with pushed images; run 'edgekit init' first")
    from edge_toolkit.images import ImageCatalog

    record = ImageCatalog(workspace).latest(module.name, platform)
    digest = record.repo_digest if record is not None else None
    if not digest:
        raise ManifestError(
            f"no pushed image of {module.name} for {platform} is recorded",
            [f"modules.{module.name}: run 'edgekit push' for {platform} first, or drop --pin-digests"],
        )
    return str(digest)
