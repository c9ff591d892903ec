"""A workspace: one folder holding the SQLite catalog and the content-addressed blobs.

Layout::

    .edgekit/
      workspace.json      marker: format version, created_at (what makes a folder a workspace)
      catalog.sqlite      the catalog (WAL mode); each feature owns its tables
      blobs/sha256/..     model files, by content

Features (the registry, image records, deployment history) declare their own tables with
``Workspace.ensure_schema``; the workspace knows nothing of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from edge_toolkit.blobs import BlobStore
from edge_toolkit.errors import WorkspaceError

if TYPE_CHECKING:
    from edge_toolkit.registry import ModelRegistry

FORMAT_VERSION = 1
MARKER = "workspace.json"
CATALOG = "catalog.sqlite"
DEFAULT_DIRNAME = ".edgekit"
HOME_ENV = "EDGEKIT_HOME"
# Concurrent CLI calls wait for each other's write transactions instead of failing.
BUSY_TIMEOUT_S = 30.0


def default_workspace_path() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_DIRNAME


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        self._schemas: set[str] = set()

    # opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str) -> Workspace:
        root = Path(root)
        if (root / MARKER).is_file():
            return cls.open(root)
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder; choose another --workspace path")
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / "blobs").mkdir(exist_ok=True)
            marker = {
                "format": FORMAT_VERSION,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            tmp = root / f".{MARKER}.{os.getpid()}"
            tmp.write_text(json.dumps(marker, indent=2) + "\n")
            os.replace(tmp, root / MARKER)
        except OSError as exc:
            raise WorkspaceError(f"cannot create a workspace at {root}: {exc.strerror}") from exc
        workspace = cls(root)
        with workspace.connect():
            pass  # creates the catalog and switches it to WAL
        return workspace

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        root = Path(root)
        marker = root / MARKER
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder; choose another --workspace path")
        if not marker.is_file():
            raise WorkspaceError(
                f"{root} is not an edgekit workspace; run 'edgekit init' there, "
                f"or point --workspace / {HOME_ENV} at an existing one"
            )
        try:
            fmt = json.loads(marker.read_text()).get("format")
        except (OSError, ValueError) as exc:
            raise WorkspaceError(
                f"{marker} is unreadable or corrupt ({exc}); restore it from a backup"
            ) from exc
        if fmt != FORMAT_VERSION:
            raise WorkspaceError(
                f"{root} has workspace format {fmt}; this edgekit reads format {FORMAT_VERSION}: "
                "upgrade edgekit"
            )
        return cls(root)

    @classmethod
    def open_or_create(cls, root: Path | str) -> Workspace:
        """Open the workspace at ``root``, creating it where nothing is yet.

        A folder that already holds anything but a workspace (being made by a concurrent call) is
        refused rather than turned into one: a mistyped --workspace must not litter a project."""
        root = Path(root)
        if (root / MARKER).is_file():
            return cls.open(root)
        if root.is_dir():
            foreign = sorted(p.name for p in root.iterdir() if not _workspace_entry(p.name))
            if foreign:
                raise WorkspaceError(
                    f"{root} is not an edgekit workspace and holds other files ({', '.join(foreign[:3])}"
                    f"{', …' if len(foreign) > 3 else ''}); run 'edgekit init' there to make it one, "
                    "or point --workspace at another folder"
                )
        return cls.create(root)

    # catalog ------------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A catalog connection; commit on success, roll back on error, always closed."""
        try:
            conn = sqlite3.connect(self.catalog_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise WorkspaceError(f"cannot open the catalog {self.catalog_path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        except sqlite3.DatabaseError as exc:
            if "malformed" in str(exc) or "not a database" in str(exc):
                raise WorkspaceError(
                    f"the catalog {self.catalog_path} is corrupt ({exc}); restore it from a backup"
                ) from exc
            raise
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so concurrent writers queue."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ensure_schema(self, name: str, ddl: str) -> None:
        """Run a feature's CREATE TABLE IF NOT EXISTS script once per process."""
        if name in self._schemas:
            return
        with self.connect() as conn:
            conn.executescript(ddl)
        self._schemas.add(name)

    # features -----------------------------------------------------------------------------
    @cached_property
    def registry(self) -> ModelRegistry:
        from edge_toolkit.registry import ModelRegistry

        return ModelRegistry(self)


def _workspace_entry(name: str) -> bool:
    """A name a workspace being created has in its folder (the marker comes last)."""
    return name in (MARKER, "blobs") or name.startswith((CATALOG, f".{MARKER}."))
