"""How the CLI shows results: a rich table for people, JSON for scripts (`--json`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not markup: shapes such as "[batch, 64]" must not be read as rich tags.
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    Console().print(table)


def print_fields(title: str | None, fields: Mapping[str, Any]) -> None:
    """A two-column key/value table for one object."""
    print_table(title, ["field", "value"], [(k, v) for k, v in fields.items()])
