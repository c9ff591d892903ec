"""Secrets in manifests: kept as `${NAME}` references on disk, resolved in memory at deploy time.

A generated manifest can then be committed; only `edgekit deploy` (or whoever reads the
manifest with the secret values at hand) ever holds the resolved document.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from edge_toolkit.errors import ManifestError
from edge_toolkit.manifest import create_options, placeholders
from edge_toolkit.manifest.document import module_settings

log = logging.getLogger(__name__)

SECRET_PATTERNS = ("*PASSWORD*", "*SECRET*", "*KEY*", "*TOKEN*")


def secret_predicate(extra: Iterable[str] = ()) -> Callable[[str], bool]:
    """True for variable names that are secrets: the usual patterns plus names given explicitly."""
    named = {n.upper() for n in extra}

    def is_secret(name: str) -> bool:
        upper = name.upper()
        if upper.startswith(placeholders.MODULES_PREFIX):
            return False
        return upper in named or any(fnmatch.fnmatchcase(upper, p) for p in SECRET_PATTERNS)

    return is_secret


def references(document: Any) -> list[placeholders.Reference]:
    """The `${NAME}` references a manifest still holds (secrets left for deploy time)."""
    return [r for r in placeholders.find(document) if not r.is_module and r.written.startswith("${")]


def resolve(document: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the manifest with every `${NAME}` reference replaced; error if any is unknown.

    createOptions chunks are merged before and re-split after, because a reference may straddle
    two chunks and the resolved value changes the chunk boundaries. The merged text is parsed
    back into its JSON object first, so a value with a quote or a backslash in it is escaped
    when the object is minified again instead of breaking the JSON.
    """
    merged = copy.deepcopy(dict(document))
    for settings, path in module_settings(merged):
        text = create_options.merge(settings, path)
        if text is not None:
            for key in create_options.chunk_keys(settings):
                del settings[key]
            try:
                settings[create_options.BASE_KEY] = json.loads(text)
            except ValueError:
                settings[create_options.BASE_KEY] = text  # not JSON: validation reports it
    resolved, missing = placeholders.substitute(merged, values.get, bare=False)
    braced = [r for r in missing if r.written.startswith("${")]
    if braced:
        raise ManifestError(
            "the manifest references values that are not set",
            [
                f"{r.path}: {r.written} is not set; export {r.name} or put it in the --env-file"
                for r in braced
            ],
        )
    for settings, path in module_settings(resolved):
        create_options.apply_to_settings(settings, path)
    return dict(resolved)
