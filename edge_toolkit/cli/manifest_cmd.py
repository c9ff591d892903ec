"""`edgekit manifest | deploy` (being built: see issue 5)."""

from __future__ import annotations

import click

from edge_toolkit.errors import EdgeKitError


def _not_yet(name: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise EdgeKitError(f"'edgekit {name}' is not available in this version yet")

    return command


manifest_group = _not_yet("manifest")
deploy_command = _not_yet("deploy")
