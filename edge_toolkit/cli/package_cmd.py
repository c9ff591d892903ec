"""`edgekit package | build | push | images`: models → module folder → image → registry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_toolkit.cli.context import cli_context
from edge_toolkit.cli.output import json_option, print_json, print_table
from edge_toolkit.errors import BuildError, PackagingError

if TYPE_CHECKING:
    from rich.console import Console


def _platforms(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@click.command("package")
@click.argument("refs", nargs=-1, required=True, metavar="NAME[:VERSION]...")
@click.option("--target", default="cpu", show_default=True, help="A folder of module_templates/.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    default=("amd64",),
    show_default=True,
    help="amd64, arm64v8 (comma-separated or repeated).",
)
@click.option(
    "--score-script",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An Azure ML score.py (init() / run(raw_data)) served on POST /score.",
)
@click.option(
    "--requirements",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Extra pip requirements of the scoring script.",
)
@click.option("--module-name", help="Module and image name (default: the first model's name).")
@click.option(
    "--module-version", default="0.0.1", show_default=True, help="image.tag.version in module.json."
)
@click.option("--repository", help="image.repository (default: localhost:5000/<module>).")
@click.option("--cpus", type=float, help="CPU limit in the module's createOptions (NanoCpus).")
@click.option("--memory", help="Memory limit in createOptions, e.g. 512m or 2g.")
@click.option("--device", "devices", multiple=True, help="A /dev path to mount; repeat for more.")
@click.option("--port", type=int, default=5001, show_default=True, help="The agent's HTTP port.")
@click.option(
    "--hub",
    "hub_transport",
    default="none",
    show_default=True,
    type=click.Choice(["none", "console", "mqtt", "iothub", "iotedge"]),
    help="The agent's hub transport.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Module folder (default: modules/<module>).",
)
@click.option("--force", is_flag=True, help="Replace a non-module folder at --output.")
@json_option
def package_command(
    *,
    refs: tuple[str, ...],
    target: str,
    platforms: tuple[str, ...],
    score_script: Path | None,
    requirements: Path | None,
    module_name: str | None,
    module_version: str,
    repository: str | None,
    cpus: float | None,
    memory: str | None,
    devices: tuple[str, ...],
    port: int,
    hub_transport: str,
    output: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write an IoT Edge module folder serving registered model(s) NAME[:VERSION]."""
    from edge_toolkit import __version__
    from edge_toolkit.packager.plan import PackageOptions, PlannedModel, Resources, make_plan, parse_memory
    from edge_toolkit.packager.requirements import agent_requirements
    from edge_toolkit.packager.targets import check_platforms, load_target
    from edge_toolkit.packager.writer import write_module

    started = time.perf_counter()
    registry = cli_context().workspace().registry
    versions = [registry.get(ref) for ref in refs]
    spec = load_target(target)
    chosen = check_platforms(spec, _platforms(platforms))
    user_requirements: tuple[str, ...] = ()
    if requirements is not None:
        if not requirements.is_file():
            raise PackagingError(f"requirements file {requirements}: no such file")
        user_requirements = tuple(
            line.strip()
            for line in requirements.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        )
    if score_script is not None and not score_script.is_file():
        raise PackagingError(f"scoring script {score_script}: no such file")
    name = module_name or versions[0].name.lower().replace("_", "-")
    options = PackageOptions(
        module_name=name,
        target=spec,
        platforms=chosen,
        models=tuple(PlannedModel(v.name, v.version, v.sha256, v.size) for v in versions),
        agent_requirements=agent_requirements(spec),
        user_requirements=user_requirements,
        score_script=None if score_script is None else score_script.name,
        resources=Resources(
            cpus=cpus,
            memory_bytes=None if memory is None else parse_memory(memory),
            devices=tuple(devices),
        ),
        port=port,
        module_version=module_version,
        repository=repository,
        hub_transport=hub_transport,
        edgekit_version=__version__,
    )
    plan = make_plan(options)
    blobs = {(v.name, v.version): v.blob_path for v in versions if v.blob_path is not None}
    folder = write_module(plan, output or Path("modules") / name, blobs, score_script, force=force)
    seconds = time.perf_counter() - started
    summary = {
        "module": name,
        "path": str(folder),
        "target": spec.name,
        "platforms": list(chosen),
        "models": [f"{v.name}:{v.version}" for v in versions],
        "image": {p: f"{plan.image_repository}:{module_version}-{p}" for p in chosen},
        "seconds": round(seconds, 3),
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote module {name} ({spec.name}; {', '.join(chosen)}) to {folder} in {seconds:.2f} s")


@click.command("build")
@click.argument("module_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--platform", default="amd64", show_default=True, help="amd64 or arm64v8.")
@click.option(
    "--base-image",
    help="Base image instead of the target's ('debian-local': made here "
    "with mmdebstrap and cached, for engines without registry access).",
)
@click.option(
    "--tag", "tags", multiple=True, help="An extra REPOSITORY[:TAG] for the image; repeat for more."
)
@click.option("--offline", is_flag=True, help="Download device-side wheels first; install with --no-index.")
@click.option("--network", help="Network of the build's RUN steps (default: none with --offline, else host).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the full build log here (always written on failure when given).",
)
@json_option
def build_command(
    *,
    module_dir: Path,
    platform: str,
    base_image: str | None,
    tags: tuple[str, ...],
    offline: bool,
    network: str | None,
    log_file: Path | None,
    as_json: bool,
) -> None:
    """Build the module image for one platform and record it in the workspace."""
    from edge_toolkit.cli.progress import BuildProgress
    from edge_toolkit.images import ImageCatalog
    from edge_toolkit.packager.build import build_module
    from edge_toolkit.packager.docker_client import DockerEngine
    from edge_toolkit.packager.module import ModuleFolder

    module = ModuleFolder.load(module_dir)
    workspace = cli_context().workspace()
    console = _console()
    with DockerEngine() as engine:
        try:
            with BuildProgress(console, f"building {module.name} ({platform})") as progress:
                result = build_module(
                    module,
                    platform,
                    engine,
                    base_image=base_image,
                    offline=offline,
                    extra_tags=tags,
                    network_mode=network,
                    on_event=progress,
                )
                progress.finish()
        except BuildError as exc:
            if log_file is not None:
                log_file.write_text(exc.log)
            else:
                console.print(exc.log, markup=False)
            raise
    if log_file is not None:
        log_file.write_text(result.log)
    records = [(m.name, m.version, m.sha256) for m in module.models]
    ImageCatalog(workspace).record_build(module.name, platform, result.image, result.image_id, records)
    summary = {
        "module": module.name,
        "platform": platform,
        "image": result.image,
        "image_id": result.image_id,
        "architecture": result.architecture,
        "size": result.size,
        "steps": result.steps,
        "cached_steps": result.cached_steps,
        "seconds": round(result.seconds, 2),
        "wheels_bytes": None if result.wheels is None else result.wheels.size,
        "base_image": result.base_image or None,
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"built {result.image} ({result.image_id[:19]}, {result.size / 1e6:.0f} MB, "
            f"{result.cached_steps}/{result.steps} steps cached) in {result.seconds:.1f} s"
        )


@click.command("push")
@click.argument("module_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--registry", required=True, help="HOST[:PORT] of the image registry.")
@click.option("--platform", default="amd64", show_default=True, help="amd64 or arm64v8.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".env"),
    show_default=True,
    help="Where CONTAINER_REGISTRY_USERNAME/PASSWORD may be set.",
)
@json_option
def push_command(module_dir: Path, registry: str, platform: str, env_file: Path, as_json: bool) -> None:
    """Push the module's built image to a registry and record its digest."""
    from edge_toolkit.cli.progress import PushProgress
    from edge_toolkit.images import ImageCatalog
    from edge_toolkit.packager.credentials import find_credentials
    from edge_toolkit.packager.docker_client import DockerEngine
    from edge_toolkit.packager.module import ModuleFolder
    from edge_toolkit.packager.push import push_image

    module = ModuleFolder.load(module_dir)
    catalog = ImageCatalog(cli_context().workspace())
    credentials = find_credentials(registry, dotenv=env_file)
    console = _console()
    with DockerEngine() as engine:
        image_id = str(engine.inspect_image(module.image_name(platform)).get("Id", ""))
        with PushProgress(console, f"pushing {module.name} ({platform}) to {registry}") as progress:
            result = push_image(
                engine, module, platform, registry, credentials=credentials, on_event=progress
            )
    record = catalog.record_push(module.name, platform, image_id, result.image, result.repo_digest)
    if as_json:
        print_json(
            {
                **record.to_dict(),
                "layers": result.layers,
                "layers_existing": result.layers_existing,
                "seconds": round(result.seconds, 2),
            }
        )
    else:
        click.echo(
            f"pushed {result.image} "
            f"({result.layers - result.layers_existing} of {result.layers} layers sent) "
            f"as {result.repo_digest} in {result.seconds:.1f} s"
        )


@click.command("images")
@click.argument("module", required=False)
@json_option
def images_command(module: str | None, as_json: bool) -> None:
    """List the images built and pushed from this workspace, with their model versions."""
    from edge_toolkit.images import ImageCatalog

    records = ImageCatalog(cli_context().workspace()).list(module)
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    rows = [
        (
            r.module,
            r.platform,
            ", ".join(r.models),
            r.image,
            r.image_id[7:19],
            r.repo_digest or "",
            r.built_at,
            r.pushed_at or "",
        )
        for r in records
    ]
    print_table("images", ["module", "platform", "models", "image", "id", "digest", "built", "pushed"], rows)
