"""`edgekit package | build | push | images` (being built: see issue 4)."""

from __future__ import annotations

import click

from edge_toolkit.errors import EdgeKitError


def _not_yet(name: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise EdgeKitError(f"'edgekit {name}' is not available in this version yet")

    return command


package_command = _not_yet("package")
build_command = _not_yet("build")
push_command = _not_yet("push")
images_command = _not_yet("images")
