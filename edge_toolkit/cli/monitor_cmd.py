"""`edgekit monitor` (being built: see issue 6)."""

from __future__ import annotations

import click

from edge_toolkit.errors import EdgeKitError


def _not_yet(name: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise EdgeKitError(f"'edgekit {name}' is not available in this version yet")

    return command


monitor_command = _not_yet("monitor")
