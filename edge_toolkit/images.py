"""Images built and pushed from this workspace, against the model versions they carry.

One row per build; a push fills in the pushed reference and its digest. The manifest side reads
:meth:`ImageCatalog.latest` to pin a module's image by digest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_toolkit.errors import PackagingError

if TYPE_CHECKING:
    import sqlite3

    from edge_toolkit.workspace import Workspace

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    module        TEXT NOT NULL,
    platform      TEXT NOT NULL,
    image         TEXT NOT NULL,
    image_id      TEXT NOT NULL,
    repo_digest   TEXT,
    model_name    TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    model_sha256  TEXT NOT NULL,
    models        TEXT NOT NULL DEFAULT '[]',
    built_at      TEXT NOT NULL,
    pushed_at     TEXT
);
CREATE INDEX IF NOT EXISTS images_module ON images (module, platform, id);
"""


@dataclass(frozen=True)
class ImageRecord:
    module: str
    platform: str
    image: str  # repo:tag; the pushed reference once pushed
    image_id: str
    repo_digest: str | None  # registry/repo@sha256:… once pushed
    model_name: str  # the module's first model
    model_version: int
    model_sha256: str
    built_at: str
    pushed_at: str | None
    models: tuple[str, ...] = field(default=())  # every "name:version" in the image

    def to_dict(self) -> dict[str, object]:
        return {
            "module": self.module,
            "platform": self.platform,
            "image": self.image,
            "image_id": self.image_id,
            "repo_digest": self.repo_digest,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_sha256": self.model_sha256,
            "models": list(self.models),
            "built_at": self.built_at,
            "pushed_at": self.pushed_at,
        }


class ImageCatalog:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        workspace.ensure_schema("images", SCHEMA)

    def record_build(
        self,
        module: str,
        platform: str,
        image: str,
        image_id: str,
        models: list[tuple[str, int, str]],
    ) -> ImageRecord:
        """Record a finished build; ``models`` are (name, version, sha256), the first is primary."""
        name, version, sha = models[0]
        with self.workspace.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO images (module, platform, image, image_id, model_name, model_version, "
                "model_sha256, models, built_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    module,
                    platform,
                    image,
                    image_id,
                    name,
                    version,
                    sha,
                    json.dumps([f"{n}:{v}" for n, v, _ in models]),
                    _now(),
                ),
            )
            row = conn.execute("SELECT * FROM images WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _record(row)

    def record_push(
        self, module: str, platform: str, image_id: str, image: str, repo_digest: str
    ) -> ImageRecord:
        """Mark the latest build of ``image_id`` as pushed (a new row if it was built elsewhere)."""
        with self.workspace.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM images WHERE module = ? AND platform = ? AND image_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (module, platform, image_id),
            ).fetchone()
            if row is None:
                raise PackagingError(
                    f"no build of {module} ({platform}) with image id {image_id} in this workspace; "
                    "build it with 'edgekit build' first"
                )
            if row["pushed_at"] is not None and row["repo_digest"] != repo_digest:
                # Pushed again elsewhere: keep both pushes as rows.
                cursor = conn.execute(
                    "INSERT INTO images (module, platform, image, image_id, repo_digest, model_name, "
                    "model_version, model_sha256, models, built_at, pushed_at) "
                    "SELECT module, platform, ?, image_id, ?, model_name, model_version, model_sha256, "
                    "models, built_at, ? FROM images WHERE id = ?",
                    (image, repo_digest, _now(), row["id"]),
                )
                row_id = cursor.lastrowid
            else:
                conn.execute(
                    "UPDATE images SET image = ?, repo_digest = ?, pushed_at = ? WHERE id = ?",
                    (image, repo_digest, _now(), row["id"]),
                )
                row_id = row["id"]
            updated = conn.execute("SELECT * FROM images WHERE id = ?", (row_id,)).fetchone()
        return _record(updated)

    def list(self, module: str | None = None) -> list[ImageRecord]:
        """Newest first."""
        with self.workspace.connect() as conn:
            if module is None:
                rows = conn.execute("SELECT * FROM images ORDER BY id DESC").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM images WHERE module = ? ORDER BY id DESC", (module,)
                ).fetchall()
        return [_record(r) for r in rows]

    def latest(self, module: str, platform: str) -> ImageRecord | None:
        """The newest build of ``module`` for ``platform`` (pushed or not)."""
        with self.workspace.connect() as conn:
            row = conn.execute(
                "SELECT * FROM images WHERE module = ? AND platform = ? ORDER BY id DESC LIMIT 1",
                (module, platform),
            ).fetchone()
        return None if row is None else _record(row)


def _record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        module=row["module"],
        platform=row["platform"],
        image=row["image"],
        image_id=row["image_id"],
        repo_digest=row["repo_digest"],
        model_name=row["model_name"],
        model_version=int(row["model_version"]),
        model_sha256=row["model_sha256"],
        built_at=row["built_at"],
        pushed_at=row["pushed_at"],
        models=tuple(json.loads(row["models"])),
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
