"""Docker createOptions as IoT Edge carries them: a minified JSON string in ≤ 8 chunks.

IoT Hub limits one twin string property to 4 KB, so the IoT Edge agent reads a module's
``settings.createOptions`` followed by ``createOptions01`` … ``createOptions07`` and concatenates
them. The IoT Edge tooling splits at 512 characters; we split at 512 *UTF-8 bytes* and never inside
a character, which satisfies both readings of the limit. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from edge_toolkit.errors import ManifestError

CHUNK_BYTES = 512
MAX_CHUNKS = 8
BASE_KEY = "createOptions"
_KEY_RE = re.compile(r"^createOptions(?:0([1-7]))?$")


def chunk_key(index: int) -> str:
    """`createOptions` for the first chunk, then `createOptions01` … `createOptions07`."""
    return BASE_KEY if index == 0 else f"{BASE_KEY}{index:02d}"


def minify(options: Mapping[str, Any]) -> str:
    """The compact JSON text of createOptions (key order kept, non-ASCII kept as UTF-8)."""
    return json.dumps(options, separators=(",", ":"), ensure_ascii=False)


def split(text: str, path: str = "createOptions") -> dict[str, str]:
    """Split `text` into at most 8 chunks of at most 512 UTF-8 bytes, never inside a character.

    Raises ManifestError naming `path` and the size when the text does not fit.
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > CHUNK_BYTES:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current or not chunks:
        chunks.append("".join(current))
    if len(chunks) > MAX_CHUNKS:
        total = len(text.encode("utf-8"))
        raise ManifestError(
            "createOptions too large",
            [
                f"{path}: createOptions is {total} bytes minified; IoT Edge accepts at most "
                f"{MAX_CHUNKS} chunks of {CHUNK_BYTES} bytes ({MAX_CHUNKS * CHUNK_BYTES} bytes): "
                "move settings into environment variables or the module twin"
            ],
        )
    return {chunk_key(i): chunk for i, chunk in enumerate(chunks)}


def chunk_keys(settings: Mapping[str, Any]) -> list[str]:
    """The createOptions chunk keys present in a module's settings, in index order."""
    found = [k for k in settings if _KEY_RE.match(k)]
    return sorted(found, key=lambda k: 0 if k == BASE_KEY else int(k[len(BASE_KEY) :]))


def merge(settings: Mapping[str, Any], path: str = "settings") -> str | None:
    """Join the chunks of `settings` back into one string (None when there are none).

    Chunks must be strings and contiguous from `createOptions`; a gap means the agent would stop
    reading early, so it is an error.
    """
    keys = chunk_keys(settings)
    if not keys:
        return None
    problems = []
    expected = [chunk_key(i) for i in range(len(keys))]
    if keys != expected:
        problems.append(
            f"{path}: createOptions chunks must be contiguous from createOptions ({', '.join(expected)}); "
            f"found {', '.join(keys)}"
        )
    for key in keys:
        if not isinstance(settings[key], str):
            problems.append(f"{path}.{key}: must be a string after generation; run 'edgekit manifest gen'")
    if problems:
        raise ManifestError("invalid createOptions", problems)
    return "".join(str(settings[k]) for k in keys)


def apply_to_settings(settings: dict[str, Any], path: str) -> None:
    """Replace a settings object's createOptions (object or string) with its chunked string form.

    An object is minified; a string is re-split as is (an over-long string in a template is the
    user's own minified text). Existing chunk keys are dropped first so a re-run is idempotent.
    """
    if BASE_KEY not in settings:
        return
    value = settings[BASE_KEY]
    if isinstance(value, Mapping):
        extra = [k for k in chunk_keys(settings) if k != BASE_KEY]
        if extra:
            raise ManifestError(
                "invalid createOptions",
                [f"{path}: createOptions is an object, so {', '.join(extra)} must not be set; remove them"],
            )
        text = minify(value)
    elif isinstance(value, str):
        existing = merge(settings, path)
        text = existing if existing is not None else value
    else:
        raise ManifestError(
            "invalid createOptions",
            [f"{path}.{BASE_KEY}: must be a JSON object or a string, not {type(value).__name__}"],
        )
    for key in chunk_keys(settings):
        del settings[key]
    settings.update(split(text, f"{path}.{BASE_KEY}"))
