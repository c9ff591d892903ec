"""`edgekit init`: create the workspace folder."""

from __future__ import annotations

import click

from edge_toolkit.cli.context import cli_context
from edge_toolkit.cli.output import json_option, print_json


@click.command("init")
@json_option
def init_command(as_json: bool) -> None:
    """Create a workspace (./.edgekit, --workspace DIR or EDGEKIT_HOME). Safe to run twice."""
    workspace = cli_context().init_workspace()
    if as_json:
        print_json({"workspace": str(workspace.root.resolve())})
    else:
        click.echo(f"workspace ready at {workspace.root.resolve()}")
