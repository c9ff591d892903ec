"""Where template variables come from: the process environment over a `.env` file.

The environment wins over the file, as with docker compose and python-dotenv, so CI can override
a developer's `.env` without editing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from edge_toolkit.errors import ManifestError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """`KEY=VALUE` lines; `#` comments; single quotes literal, double quotes with \\n escapes."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            problems.append(f"{source}:{number}: expected KEY=VALUE, got {stripped[:40]!r}")
            continue
        key, raw = match.groups()
        values[key] = _unquote(raw)
    if problems:
        raise ManifestError(f"cannot read the env file {source}", problems)
    return values


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    # An unquoted value ends at a ` #` comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0]


def load_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read the env file {path}: {exc.strerror}; check --env-file") from exc
    return parse_env_text(text, str(path))


def variables(env_file: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a template sees: the env file's, overridden by the environment's."""
    merged = load_env_file(env_file) if env_file is not None else {}
    merged.update(os.environ if environ is None else environ)
    return merged
