"""`edgekit model …`: the model registry from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from edge_toolkit.cli.context import cli_context
from edge_toolkit.cli.output import json_option, print_fields, print_json, print_table
from edge_toolkit.registry import ModelVersion, parse_tags


@click.group("model")
def model_group() -> None:
    """Register, list, show, tag, download and delete ONNX models."""


@model_group.command("register")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", "-n", required=True, help="Model name: letters, digits, '.', '_', '-'.")
@click.option("--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeat for more.")
@click.option("--description", "-d", default="", help="Free text kept with the version.")
@json_option
def register_command(path: Path, name: str, tags: tuple[str, ...], description: str, as_json: bool) -> None:
    """Register the ONNX file PATH as the next version of NAME."""
    workspace = cli_context().workspace(create=True)
    model = workspace.registry.register(path, name=name, tags=parse_tags(tags), description=description)
    if as_json:
        print_json(model.to_dict())
    else:
        click.echo(
            f"registered {model.name}:{model.version} (sha256 {model.sha256[:12]}…, {_size(model.size)})"
        )


@model_group.command("list")
@click.argument("name", required=False)
@json_option
def list_command(name: str | None, as_json: bool) -> None:
    """List every model version (or the versions of NAME)."""
    models = cli_context().workspace().registry.list(name)
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    rows = [
        (
            m.name,
            m.version,
            _size(m.size),
            ", ".join(f"{t.name}:{t.datatype}{list(t.shape)}" for t in m.signature.inputs),
            ", ".join(f"{k}={v}" for k, v in m.tags.items()),
            m.created_at,
        )
        for m in models
    ]
    print_table("models", ["name", "version", "size", "inputs", "tags", "registered"], rows)


@model_group.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
def show_command(ref: str, as_json: bool) -> None:
    """Show one version (default: the latest) with its signature."""
    model = cli_context().workspace().registry.get(ref)
    if as_json:
        print_json(model.to_dict())
        return
    _show(model)


@model_group.command("download")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="File or folder.")
@json_option
def download_command(ref: str, output: Path, as_json: bool) -> None:
    """Copy a version's ONNX file out of the workspace (checked against its sha256)."""
    registry = cli_context().workspace().registry
    model = registry.get(ref)
    written = registry.download(f"{model.name}:{model.version}", output)
    if as_json:
        print_json(
            {"name": model.name, "version": model.version, "sha256": model.sha256, "path": str(written)}
        )
    else:
        click.echo(f"wrote {model.name}:{model.version} to {written}")


@model_group.command("tag")
@click.argument("ref", metavar="NAME:VERSION")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
@json_option
def tag_command(ref: str, tags: tuple[str, ...], as_json: bool) -> None:
    """Set tags on a version (existing keys are overwritten)."""
    model = cli_context().workspace().registry.tag(ref, parse_tags(tags))
    if as_json:
        print_json(model.to_dict())
    else:
        click.echo(
            f"{model.name}:{model.version} tags: " + ", ".join(f"{k}={v}" for k, v in model.tags.items())
        )


@model_group.command("sample")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
def sample_command(path: Path, seed: int) -> None:
    """Write a small sample ONNX model (an MLP, FP32[batch, 64] -> FP32[batch, 10]) to PATH."""
    from edge_toolkit.samples import write_sample_mlp

    click.echo(f"wrote sample model to {write_sample_mlp(path, seed=seed)}")


@model_group.command("delete")
@click.argument("ref", metavar="NAME:VERSION")
@json_option
def delete_command(ref: str, as_json: bool) -> None:
    """Delete one version (its file goes when no other version shares it)."""
    model = cli_context().workspace().registry.delete(ref)
    if as_json:
        print_json({"deleted": {"name": model.name, "version": model.version}})
    else:
        click.echo(f"deleted {model.name}:{model.version}")


def _show(model: ModelVersion) -> None:
    print_fields(
        f"{model.name}:{model.version}",
        {
            "sha256": model.sha256,
            "size": _size(model.size),
            "opset": model.signature.opset,
            "producer": model.signature.producer,
            "description": model.description,
            "tags": ", ".join(f"{k}={v}" for k, v in model.tags.items()),
            "registered": model.created_at,
        },
    )
    rows = [("input", t.name, t.datatype, _shape(t.shape, t.dim_names)) for t in model.signature.inputs] + [
        ("output", t.name, t.datatype, _shape(t.shape, t.dim_names)) for t in model.signature.outputs
    ]
    print_table("signature", ["kind", "name", "datatype", "shape"], rows)


def _shape(shape: tuple[int, ...], names: tuple[str | None, ...]) -> str:
    dims = [(n or "?") if d == -1 else str(d) for d, n in zip(shape, names, strict=False)]
    return "[" + ", ".join(dims) + "]"


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)
