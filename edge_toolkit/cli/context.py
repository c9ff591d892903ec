"""State shared by every `edgekit` subcommand (the global options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from edge_toolkit.workspace import Workspace


@dataclass
class CliContext:
    workspace_path: Path | None = None
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self, create: bool = False) -> Workspace:
        """The workspace named by --workspace / EDGEKIT_HOME / ./.edgekit; ``create`` makes it
        where nothing is yet (never in a folder that holds other files)."""
        if self._workspace is None:
            from edge_toolkit.workspace import Workspace, default_workspace_path

            path = self.workspace_path or default_workspace_path()
            self._workspace = Workspace.open_or_create(path) if create else Workspace.open(path)
        return self._workspace

    def init_workspace(self) -> Workspace:
        """Make the named folder a workspace, even one that holds other files (``edgekit init``)."""
        from edge_toolkit.workspace import Workspace, default_workspace_path

        self._workspace = Workspace.create(self.workspace_path or default_workspace_path())
        return self._workspace


def cli_context() -> CliContext:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:  # a subcommand invoked outside the `edgekit` group (tests)
        obj = CliContext()
        ctx.obj = obj
    return obj
