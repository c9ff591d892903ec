"""`edgekit monitor`: a live table of devices from their health stream."""

from __future__ import annotations

import os
import time

import click

from edge_toolkit.cli.output import print_json
from edge_toolkit.errors import EdgeKitError


@click.command(name="monitor")
@click.option(
    "--mqtt", "mqtt_url", metavar="URL", help="Broker to watch: mqtt://HOST:PORT or mqtts://HOST:PORT."
)
@click.option("--prefix", default="edgekit", show_default=True, help="Topic prefix of the agents.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle for mqtts://.")
@click.option("--username", help="MQTT user name.")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the MQTT password.")
@click.option(
    "--hub-connection-string",
    envvar="IOTHUB_CONNECTION_STRING",
    help="IoT Hub service connection string (env IOTHUB_CONNECTION_STRING); twins are polled.",
)
@click.option(
    "--poll-interval", type=float, default=5.0, show_default=True, help="Twin poll period (IoT Hub)."
)
@click.option("--once", is_flag=True, help="Collect for --duration seconds, print the table once and exit.")
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: --once 3 s)."
)
@click.option("--json", "as_json", is_flag=True, help="With --once: print the rows as JSON.")
def monitor_command(
    *,
    mqtt_url: str | None,
    prefix: str,
    ca_file: str | None,
    username: str | None,
    password_env: str | None,
    hub_connection_string: str | None,
    poll_interval: float,
    once: bool,
    duration: float | None,
    as_json: bool,
) -> None:
    """Watch devices' health: status, CPU, memory, models, last seen."""
    from edge_toolkit.monitor import Fleet, HubSource, MqttSource, render

    if bool(mqtt_url) == bool(hub_connection_string):
        raise EdgeKitError("give exactly one of --mqtt URL or --hub-connection-string")
    fleet = Fleet()
    source: MqttSource | HubSource
    if mqtt_url:
        password = os.environ.get(password_env) if password_env else None
        source = MqttSource(
            fleet, mqtt_url, prefix=prefix, ca_file=ca_file, username=username, password=password
        )
    else:
        assert hub_connection_string is not None
        source = HubSource(fleet, hub_connection_string, poll_interval)
    source.start()
    limit = duration if duration is not None else (3.0 if once else None)
    deadline = None if limit is None else time.monotonic() + limit
    try:
        if once:
            while deadline is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if as_json:
                print_json(fleet.snapshot())
            else:
                from rich.console import Console

                Console().print(render(fleet))
            return
        from rich.live import Live

        with Live(render(fleet), refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
                live.update(render(fleet))
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
