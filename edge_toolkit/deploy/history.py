"""Deployment history in the workspace: every manifest sent, where, and how it ended.

Manifests are stored as written (secret references unresolved), so the catalog never holds a
registry password. The last `succeeded` row of a target is what `--rollback` re-applies.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from edge_toolkit.workspace import Workspace

Status = Literal["applied", "succeeded", "failed", "rolled_back"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT NOT NULL,          -- iothub://<hub>/<device>, mqtt://<broker>/<device>, …
    manifest    TEXT NOT NULL,          -- JSON as written, secrets unresolved
    sha256      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('applied', 'succeeded', 'failed', 'rolled_back')),
    detail      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_target ON deployments (target, id);
"""


@dataclass(frozen=True)
class DeploymentRecord:
    id: int
    target: str
    manifest: dict[str, Any]
    sha256: str
    status: Status
    detail: str
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "sha256": self.sha256,
            "status": self.status,
            "detail": self.detail,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class DeploymentHistory:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        workspace.ensure_schema("deployments", SCHEMA)

    def record(
        self, target: str, manifest: dict[str, Any], status: Status = "applied", detail: str = ""
    ) -> int:
        text = json.dumps(manifest, sort_keys=True, ensure_ascii=False)
        now = _now()
        with self.workspace.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO deployments (target, manifest, sha256, status, detail, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (target, text, hashlib.sha256(text.encode()).hexdigest(), status, detail, now, now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def set_status(self, record_id: int, status: Status, detail: str = "") -> None:
        with self.workspace.transaction() as conn:
            conn.execute(
                "UPDATE deployments SET status = ?, detail = ?, updated_at = ? WHERE id = ?",
                (status, detail, _now(), record_id),
            )

    def last_good(self, target: str, before: int | None = None) -> DeploymentRecord | None:
        """The newest deployment to `target` that succeeded (older than row `before`, if given)."""
        with self.workspace.connect() as conn:
            row = conn.execute(
                "SELECT * FROM deployments WHERE target = ? AND status = 'succeeded' AND id < ? "
                "ORDER BY id DESC LIMIT 1",
                (target, before if before is not None else 2**63 - 1),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, target: str | None = None, limit: int = 50) -> list[DeploymentRecord]:
        with self.workspace.connect() as conn:
            if target is None:
                rows = conn.execute("SELECT * FROM deployments ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = conn.execute(
                    "SELECT * FROM deployments WHERE target = ? ORDER BY id DESC LIMIT ?", (target, limit)
                )
            return [_record(r) for r in rows.fetchall()]


def _record(row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        id=row["id"],
        target=row["target"],
        manifest=json.loads(row["manifest"]),
        sha256=row["sha256"],
        status=row["status"],
        detail=row["detail"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
