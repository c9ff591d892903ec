"""The model registry: named ONNX models with numbered versions, tags and signatures.

Invariants:
- A version is allocated inside a write transaction taken before reading the current maximum
  (BEGIN IMMEDIATE), so concurrent `register` calls get distinct, gap-free numbers.
- A file is checked (parsed and validated as ONNX) before anything is written, so a bad file
  leaves the catalog and blobs as they were.
- Registering content already registered under the same name returns that version.
- A blob is deleted only when no version refers to it any more.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_toolkit.blobs import sha256_file
from edge_toolkit.errors import InvalidModelError, InvalidNameError, ModelNotFoundError, RegistryError
from edge_toolkit.signature import Signature, read_signature

if TYPE_CHECKING:
    import sqlite3

    from edge_toolkit.workspace import Workspace

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 128
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    signature   TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS model_versions_sha ON model_versions (sha256);
CREATE TABLE IF NOT EXISTS model_tags (
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version) ON DELETE CASCADE
);
"""


def validate_name(name: str) -> str:
    if not name:
        raise InvalidNameError("model name is empty; use letters, digits, '.', '_' or '-'")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"model name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not NAME_RE.match(name):
        raise InvalidNameError(
            f"invalid model name {name!r}: start with a letter or digit and use only letters, digits, "
            "'.', '_' or '-' (no path separators, spaces or ':')"
        )
    return name


@dataclass(frozen=True)
class ModelRef:
    """``NAME`` (latest version) or ``NAME:VERSION``."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, version_text = text.partition(":")
        validate_name(name)
        if not sep or version_text == "latest":
            return cls(name)
        if not version_text.isdigit() or int(version_text) < 1:
            raise InvalidNameError(f"invalid version {version_text!r} in {text!r}: use NAME:N with N ≥ 1")
        return cls(name, int(version_text))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    sha256: str
    size: int
    description: str
    signature: Signature
    created_at: str
    source: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    blob_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        sig = self.signature.to_dict()
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "description": self.description,
            "tags": dict(self.tags),
            "created_at": self.created_at,
            "source": self.source,
            "inputs": sig["inputs"],
            "outputs": sig["outputs"],
            "opset": sig["opset"],
            "producer": sig["producer"],
            "ir_version": sig["ir_version"],
        }


class ModelRegistry:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        workspace.ensure_schema("registry", SCHEMA)

    # writing ------------------------------------------------------------------------------
    def register(
        self,
        path: Path | str,
        name: str,
        tags: dict[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Add ``path`` as the next version of ``name`` (or return the version with the same bytes)."""
        path = Path(path)
        validate_name(name)
        tags = _validate_tags(tags or {})
        if not path.exists():
            raise InvalidModelError(f"{path}: no such file; check the path")
        if not path.is_file():
            raise InvalidModelError(f"{path} is not a file; give the path of a .onnx file")
        started = time.perf_counter()
        existing = self._find_by_content(name, sha256_file(path))
        if existing is not None:
            # Same bytes already registered under this name: no parse, no copy.
            if tags:
                existing = self.tag(existing, tags)
            log.info("model already registered", extra={"model": name, "version": existing.version})
            return existing
        signature = read_signature(path)  # refuses bad files before anything is written
        sha, size = self.workspace.blobs.put_file(path)
        try:
            with self.workspace.transaction() as conn:
                existing = conn.execute(
                    "SELECT version FROM model_versions WHERE name = ? AND sha256 = ? "
                    "ORDER BY version LIMIT 1",
                    (name, sha),
                ).fetchone()
                if existing is not None:
                    version = int(existing["version"])
                    _write_tags(conn, name, version, tags)
                    created = False
                else:
                    row = conn.execute(
                        "SELECT COALESCE(MAX(version), 0) AS v FROM model_versions WHERE name = ?", (name,)
                    ).fetchone()
                    version = int(row["v"]) + 1
                    conn.execute(
                        "INSERT INTO model_versions (name, version, sha256, size, description, signature, "
                        "source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            name,
                            version,
                            sha,
                            size,
                            description,
                            json.dumps(signature.to_dict()),
                            str(path.resolve()),
                            _now(),
                        ),
                    )
                    _write_tags(conn, name, version, tags)
                    created = True
        except BaseException:
            self._drop_blob_if_unreferenced(sha)
            raise
        if not self.workspace.blobs.exists(sha):
            # A concurrent delete of another version with the same bytes dropped the blob
            # between our write and our commit: write it again.
            self.workspace.blobs.put_file(path)
        log.info(
            "model registered" if created else "model already registered",
            extra={
                "model": name,
                "version": version,
                "sha256": sha,
                "size": size,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return self.get(ModelRef(name, version))

    def _find_by_content(self, name: str, sha: str) -> ModelVersion | None:
        with self.workspace.connect() as conn:
            row = conn.execute(
                "SELECT * FROM model_versions WHERE name = ? AND sha256 = ? ORDER BY version LIMIT 1",
                (name, sha),
            ).fetchone()
            return None if row is None else self._from_row(row, _read_tags(conn, name, row["version"]))

    def tag(self, ref: ModelRef | ModelVersion | str, tags: dict[str, str]) -> ModelVersion:
        model = ref if isinstance(ref, ModelVersion) else self.get(ref)
        tags = _validate_tags(tags)
        with self.workspace.transaction() as conn:
            _write_tags(conn, model.name, model.version, tags)
        return self.get(ModelRef(model.name, model.version))

    def delete(self, ref: ModelRef | str) -> ModelVersion:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if ref.version is None:
            raise InvalidNameError(f"say which version to delete: {ref.name}:N (see 'edgekit model list')")
        model = self.get(ref)
        with self.workspace.transaction() as conn:
            conn.execute(
                "DELETE FROM model_versions WHERE name = ? AND version = ?", (model.name, model.version)
            )
        self._drop_blob_if_unreferenced(model.sha256)
        log.info("model deleted", extra={"model": model.name, "version": model.version})
        return model

    # reading ------------------------------------------------------------------------------
    def get(self, ref: ModelRef | str) -> ModelVersion:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self.workspace.connect() as conn:
            if ref.version is None:
                row = conn.execute(
                    "SELECT * FROM model_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (ref.name,)
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM model_versions WHERE name = ? AND version = ?", (ref.name, ref.version)
                ).fetchone()
            if row is None:
                known = conn.execute(
                    "SELECT group_concat(version) AS v FROM model_versions WHERE name = ?", (ref.name,)
                ).fetchone()["v"]
                if known:
                    raise ModelNotFoundError(
                        f"model {ref.name} has no version {ref.version}; existing versions: {known}"
                    )
                raise ModelNotFoundError(f"no model named {ref.name!r}; see 'edgekit model list'")
            tags = _read_tags(conn, row["name"], row["version"])
        return self._from_row(row, tags)

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of one model, or of all), newest version of each name first."""
        with self.workspace.connect() as conn:
            if name is None:
                rows = conn.execute("SELECT * FROM model_versions ORDER BY name, version DESC").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM model_versions WHERE name = ? ORDER BY version DESC",
                    (validate_name(name),),
                ).fetchall()
            return [self._from_row(r, _read_tags(conn, r["name"], r["version"])) for r in rows]

    def download(self, ref: ModelRef | str, destination: Path | str) -> Path:
        """Copy a version's file to ``destination`` (a file path, or a folder to put NAME-VERSION.onnx in)."""
        model = self.get(ref)
        destination = Path(destination)
        if destination.is_dir():
            destination = destination / f"{model.name}-{model.version}.onnx"
        assert model.blob_path is not None
        if not model.blob_path.is_file():
            raise RegistryError(
                f"the file of {model.name}:{model.version} ({model.sha256}) is missing from the blob store; "
                "register the model again"
            )
        tmp = destination.with_name(f".{destination.name}.partial")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model.blob_path, tmp)
            if sha256_file(tmp) != model.sha256:
                raise RegistryError(
                    f"the stored file of {model.name}:{model.version} does not match its sha256; "
                    "the blob store is damaged: register the model again"
                )
            tmp.replace(destination)
        except OSError as exc:
            raise RegistryError(f"cannot write {destination}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return destination

    # helpers ------------------------------------------------------------------------------
    def _from_row(self, row: sqlite3.Row, tags: dict[str, str]) -> ModelVersion:
        return ModelVersion(
            name=row["name"],
            version=int(row["version"]),
            sha256=row["sha256"],
            size=int(row["size"]),
            description=row["description"],
            signature=Signature.from_dict(json.loads(row["signature"])),
            created_at=row["created_at"],
            source=row["source"],
            tags=tags,
            blob_path=self.workspace.blobs.path_for(row["sha256"]),
        )

    def _drop_blob_if_unreferenced(self, sha: str) -> None:
        with self.workspace.transaction() as conn:
            used = conn.execute("SELECT 1 FROM model_versions WHERE sha256 = ? LIMIT 1", (sha,)).fetchone()
            if used is None:
                self.workspace.blobs.delete(sha)


def parse_tags(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["stage=dev", "owner=ml"]`` -> ``{"stage": "dev", "owner": "ml"}``."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidNameError(f"tag {pair!r} is not KEY=VALUE")
        tags[key.strip()] = value
    return _validate_tags(tags)


def _validate_tags(tags: dict[str, str]) -> dict[str, str]:
    for key in tags:
        if not TAG_KEY_RE.match(key):
            raise InvalidNameError(f"invalid tag key {key!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return {k: str(v) for k, v in tags.items()}


def _write_tags(conn: sqlite3.Connection, name: str, version: int, tags: dict[str, str]) -> None:
    conn.executemany(
        "INSERT INTO model_tags (name, version, key, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
        [(name, version, k, v) for k, v in tags.items()],
    )


def _read_tags(conn: sqlite3.Connection, name: str, version: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT key, value FROM model_tags WHERE name = ? AND version = ? ORDER BY key", (name, version)
    ).fetchall()
    return {r["key"]: r["value"] for r in rows}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
