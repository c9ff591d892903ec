"""Entry point of `edgekit`: global options, error-to-exit-code mapping, subcommand registry."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge_toolkit import __version__
from edge_toolkit.cli.context import CliContext
from edge_toolkit.errors import EdgeKitError
from edge_toolkit.logs import configure_logging

# Each subcommand lives in its own module; the group imports them lazily so that
# `edgekit --help` does not pay for onnx, docker or azure imports.
_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("edge_toolkit.cli.workspace_cmd", "init_command"),
    "model": ("edge_toolkit.cli.model_cmd", "model_group"),
    "package": ("edge_toolkit.cli.package_cmd", "package_command"),
    "build": ("edge_toolkit.cli.package_cmd", "build_command"),
    "push": ("edge_toolkit.cli.package_cmd", "push_command"),
    "images": ("edge_toolkit.cli.package_cmd", "images_command"),
    "manifest": ("edge_toolkit.cli.manifest_cmd", "manifest_group"),
    "deploy": ("edge_toolkit.cli.manifest_cmd", "deploy_command"),
    "monitor": ("edge_toolkit.cli.monitor_cmd", "monitor_command"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        import importlib

        module = importlib.import_module(target[0])
        command = getattr(module, target[1])
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option(
    "--workspace",
    "-w",
    # Not file_okay=False: a file here gets the workspace's own one-line error, not a usage block.
    type=click.Path(path_type=Path),
    envvar="EDGEKIT_HOME",
    help="Workspace folder (default: ./.edgekit; env EDGEKIT_HOME).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Structured (JSON) logs to stderr at this level.",
)
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, log_level: str) -> None:
    """edgekit: register ONNX models, package them as IoT Edge modules, deploy them to devices."""
    configure_logging(log_level)
    ctx.obj = CliContext(workspace_path=workspace)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except EdgeKitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
