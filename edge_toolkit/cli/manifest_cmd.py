"""`edgekit manifest gen|validate` and `edgekit deploy`: thin commands over edge_toolkit.manifest/deploy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_toolkit.cli.context import cli_context
from edge_toolkit.cli.output import json_option, print_json
from edge_toolkit.errors import DeployError, ManifestError

if TYPE_CHECKING:
    from edge_toolkit.deploy.status import AgentReport, Outcome


@click.group("manifest")
def manifest_group() -> None:
    """Generate deployment manifests from a template and validate them offline."""


@manifest_group.command("gen")
@click.argument("template", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--platform", "-p", default="amd64", show_default=True, help="Image platform for ${MODULES.x}.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), help="Default: .env beside it.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: config/….")
@click.option("--modules-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: modules/.")
@click.option(
    "--secret", "secret_names", multiple=True, metavar="NAME", help="Also keep NAME as a reference."
)
@click.option("--inline-secrets", is_flag=True, help="Write secret values into the file (do not commit it).")
@click.option("--pin-digests", is_flag=True, help="Use pushed image digests recorded in the workspace.")
@json_option
def gen_command(
    *,
    template: Path,
    platform: str,
    env_file: Path | None,
    output: Path | None,
    modules_dir: Path | None,
    secret_names: tuple[str, ...],
    inline_secrets: bool,
    pin_digests: bool,
    as_json: bool,
) -> None:
    """Turn TEMPLATE (deployment.template.json) into a validated manifest for one platform."""
    from edge_toolkit.manifest import generate as gen

    workspace = cli_context().workspace() if pin_digests else None
    manifest = gen.generate(
        template,
        platform=platform,
        env_file=env_file,
        modules_dir=modules_dir,
        secret_names=secret_names,
        inline_secrets=inline_secrets,
        pin_digests=pin_digests,
        workspace=workspace,
    )
    written = gen.write(manifest, output or gen.default_output(template, platform))
    if manifest.inlined_secrets:
        click.echo(
            f"warning: {', '.join(manifest.inlined_secrets)} written inline into {written}; do not commit it",
            err=True,
        )
    if as_json:
        print_json(
            {
                "manifest": str(written),
                "platform": platform,
                "images": manifest.modules,
                "secret_references": manifest.secret_refs,
                "inlined_secrets": manifest.inlined_secrets,
            }
        )
        return
    click.echo(f"wrote {written} ({platform})")
    for module, image in sorted(manifest.modules.items()):
        click.echo(f"  {module}: {image}")
    if manifest.secret_refs:
        click.echo(
            f"  secrets left as references (resolved by 'edgekit deploy'): {', '.join(manifest.secret_refs)}"
        )


@manifest_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--modules-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Modules whose inputs/outputs routes must name (default: modules/ when it exists).",
)
@json_option
def validate_command(file: Path, modules_dir: Path | None, as_json: bool) -> None:
    """Check FILE offline against the IoT Edge schemas and the semantic rules."""
    from edge_toolkit.manifest import template, validate

    document = template.load_json(file)
    interfaces = {}
    if modules_dir is None and Path("modules").is_dir():
        modules_dir = Path("modules")  # as `manifest gen` finds them
    if modules_dir is not None:
        modules = template.find_modules(modules_dir, dict(os.environ))
        interfaces = {name: m.interface for name, m in modules.items() if m.interface is not None}
    problems = validate.validate(document, interfaces)
    if as_json:
        print_json({"file": str(file), "valid": not problems, "problems": problems})
        if problems:
            raise click.exceptions.Exit(ManifestError.exit_code)
        return
    if problems:
        raise ManifestError(f"{file} has {len(problems)} problem(s)", problems)
    click.echo(f"{file} is valid")


@click.command("deploy")
@click.argument("manifest", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", "-d", "device_id", help="One device: IoT Edge device id (or MQTT device id).")
@click.option("--connection-string", envvar="IOTHUB_CONNECTION_STRING", help="Hub service connection string.")
@click.option("--deployment-id", help="A fleet deployment (IoT Hub configuration) id.")
@click.option("--target-condition", help="Fleet target, e.g. \"tags.site='plant-1'\".")
@click.option("--priority", type=int, default=10, show_default=True, help="Fleet deployment priority.")
@click.option("--layered", is_flag=True, help="The manifest is a layered deployment.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Fleet deployment label.")
@click.option(
    "--mqtt", "mqtt_url", metavar="URL", help="Plain MQTT broker: mqtt[s]://[user:pass@]host[:port]."
)
@click.option("--prefix", default="edgekit", show_default=True, help="MQTT topic prefix.")
@click.option("--module", help="Which module twin's edgekit state to publish over MQTT.")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA for mqtts://.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Secrets and variables (default: the first .env in the current folder, beside MANIFEST, "
    "or beside its folder, where `manifest gen` read it).",
)
@click.option("--wait", is_flag=True, help="Watch $edgeAgent until every module runs or one fails.")
@click.option(
    "--timeout", "timeout_s", type=float, default=300.0, show_default=True, help="--wait limit (s)."
)
@click.option(
    "--poll", "poll_s", type=float, default=2.0, show_default=True, help="--wait poll interval (s)."
)
@click.option(
    "--rollback", is_flag=True, help="On failure re-apply the last good manifest; alone: do it now."
)
@json_option
def deploy_command(
    *,
    manifest: Path | None,
    device_id: str | None,
    connection_string: str | None,
    deployment_id: str | None,
    target_condition: str | None,
    priority: int,
    layered: bool,
    labels: tuple[str, ...],
    mqtt_url: str | None,
    prefix: str,
    module: str | None,
    ca_file: Path | None,
    env_file: Path | None,
    wait: bool,
    timeout_s: float,
    poll_s: float,
    rollback: bool,
    as_json: bool,
) -> None:
    """Apply MANIFEST to a device (--device), a fleet (--deployment-id) or an MQTT device (--mqtt)."""
    from edge_toolkit.deploy import api
    from edge_toolkit.manifest.template import load_json
    from edge_toolkit.manifest.variables import variables

    workspace = cli_context().workspace(create=True)
    if env_file is None:
        env_file = _default_env_file(manifest)
    values = variables(env_file)
    document = load_json(manifest) if manifest is not None else None

    if mqtt_url is not None:
        if document is None or device_id is None:
            raise click.UsageError("--mqtt needs MANIFEST and --device")
        topic = api.deploy_mqtt(
            workspace, mqtt_url, device_id, document, values, module=module, prefix=prefix, ca_file=ca_file
        )
        _report(as_json, {"device_id": device_id, "topic": topic, "retained": True}, f"published to {topic}")
        return

    from edge_toolkit.deploy.iothub import CONNECTION_STRING_ENV, IoTHubDeployer

    if not connection_string:
        raise DeployError(
            f"no hub connection string: pass --connection-string or set {CONNECTION_STRING_ENV}"
        )
    deployer = IoTHubDeployer(connection_string)

    if deployment_id is not None:
        if document is None or not target_condition:
            raise click.UsageError("--deployment-id needs MANIFEST and --target-condition")
        created = api.deploy_fleet(
            workspace,
            deployer,
            deployment_id,
            document,
            values,
            target_condition=target_condition,
            priority=priority,
            labels=_labels(labels),
            layered=layered,
        )
        _report(
            as_json,
            {
                "deployment_id": created.id,
                "etag": created.etag,
                "target_condition": created.target_condition,
                "priority": created.priority,
            },
            f"created deployment {created.id} (priority {created.priority}) for {created.target_condition}",
        )
        return

    if device_id is None:
        raise click.UsageError("say where to deploy: --device, --deployment-id or --mqtt")
    watch: dict[str, Any] = {"wait": wait or rollback, "timeout_s": timeout_s, "poll_s": poll_s}
    with _Progress(enabled=(wait or rollback) and not as_json, device_id=device_id) as on_update:
        watch["on_update"] = on_update
        if document is None:
            if not rollback:
                raise click.UsageError("give MANIFEST, or --rollback to re-apply the last good one")
            result = api.rollback_device(workspace, deployer, device_id, values, **watch)
        else:
            result = api.deploy_to_device(
                workspace, deployer, device_id, document, values, rollback=rollback, **watch
            )
    data = result.to_dict()
    if as_json:
        print_json(data)
    outcome = result.outcome
    if outcome is not None and outcome.state != "succeeded":
        extra = (
            f"; rolled back to deployment #{result.rolled_back_to}"
            if result.rolled_back_to
            else ("; rerun with --rollback to restore the last good manifest")
        )
        raise DeployError(f"deployment to {device_id} failed: {outcome.reason}{extra}")
    if not as_json:
        state = outcome.reason if outcome else "applied (not watched; add --wait)"
        click.echo(f"deployed to {device_id} (desired version {result.desired_version}): {state}")


def _report(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        print_json(data)
    else:
        click.echo(text)


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


class _Progress:
    """A rich live table of module states while --wait polls; a no-op when disabled."""

    def __init__(self, enabled: bool, device_id: str) -> None:
        self.enabled = enabled
        self.device_id = device_id
        self._live: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
        self._live.__enter__()
        return self.update

    def update(self, report: AgentReport, outcome: Outcome) -> None:
        from rich.table import Table

        table = Table(title=f"{self.device_id}: {outcome.state}", caption=outcome.reason, header_style="bold")
        table.add_column("module")
        table.add_column("runtime status")
        table.add_column("exit code")
        for name, module in sorted(report.modules.items()):
            table.add_row(
                name, module.runtime_status, "" if module.exit_code is None else str(module.exit_code)
            )
        self._live.update(table)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)


def _default_env_file(manifest: Path | None) -> Path | None:
    """The .env that `manifest gen` used: gen reads it beside the template and writes to config/."""
    folders = [Path.cwd()]
    if manifest is not None:
        folders += [manifest.resolve().parent, manifest.resolve().parent.parent]
    return next((f / ".env" for f in folders if (f / ".env").is_file()), None)
