"""`edge-agent`: the device agent's command line.

    edge-agent run --config agent.yaml
    edge-agent run --model mlp.onnx [--name mlp] [--version 1] [--model other.onnx ...] [--port 5001]

Flags are folded into the config mapping and the whole result is validated by
:func:`device_agent.config.parse_config`, so flag mistakes are reported like file mistakes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_agent import __version__
from device_agent.config import AgentConfig, apply_environment, config_to_dict, load_config, parse_config
from device_agent.errors import ConfigError

EXIT_CONFIG = 2

_EPILOG = """\
examples:
  edge-agent run --config /app/agent.yaml
  edge-agent run --model mlp.onnx --port 8000
  edge-agent run --model a.onnx --name a --model b.onnx --name b --version 3

Endpoints (one port): /v2/... Open Inference Protocol v2 (JSON and binary tensors),
POST /score (Azure ML style), GET /metrics (Prometheus), /v2/health/live|ready.
EDGE_AGENT_PORT in the environment overrides the config's port; --port overrides both.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="edge-toolkit device agent: serves ONNX models over HTTP and talks to a hub.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve models (from --config or --model)",
        description="Serve models from an agent config file, or from ONNX files given with --model.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", type=Path, help="agent config file (YAML or JSON; docs/agent-config.md)")
    run.add_argument(
        "--model", action="append", default=[], metavar="PATH", help="an ONNX file to serve (repeatable)"
    )
    run.add_argument(
        "--name", action="append", default=[], help="name of the matching --model (default: file stem)"
    )
    run.add_argument(
        "--version",
        dest="model_version",
        action="append",
        default=[],
        metavar="V",
        help='version of the matching --model (default: "1")',
    )
    run.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    run.add_argument("--port", type=int, help="port to listen on (default 5001; 0 picks a free one)")
    run.add_argument("--api-key", action="append", default=[], help="accept 'Authorization: Bearer KEY'")
    run.add_argument("--data-dir", help="writable folder for downloads and the outbox")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", choices=["json", "text"])
    run.add_argument("--mqtt", metavar="URL", help="connect to an MQTT hub (mqtt:// or mqtts://)")
    run.add_argument("--device-id", help="this device's id on the hub")
    run.add_argument("--health-interval", type=float, metavar="SECONDS", help="health report period")
    return parser


def config_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> AgentConfig:
    """The effective config: the file (if any), then the environment, then the flags."""
    env = dict(os.environ) if environ is None else environ
    if args.config is None and not args.model:
        raise ConfigError("--config", "give an agent config with --config, or a model file with --model")
    if len(args.name) > len(args.model) or len(args.model_version) > len(args.model):
        raise ConfigError("--name", "each --name/--version belongs to a --model given before it")
    if args.config is not None:
        base = load_config(args.config, env)
        data: dict[str, Any] = config_to_dict(base)
    else:
        data = config_to_dict(apply_environment(AgentConfig(), env))
    models = list(data.get("models", []))
    for i, path in enumerate(args.model):
        name = args.name[i] if i < len(args.name) else Path(path).stem
        model: dict[str, Any] = {"name": name, "path": str(Path(path).resolve())}
        if i < len(args.model_version):
            model["version"] = args.model_version[i]
        models.append(model)
    data["models"] = models
    server = data["server"]
    for key, value in (("host", args.host), ("port", args.port)):
        if value is not None:
            server[key] = value
    if args.api_key:
        server["api_keys"] = [*server.get("api_keys", []), *args.api_key]
    for key, value in (
        ("data_dir", args.data_dir),
        ("log_level", args.log_level),
        ("log_format", args.log_format),
        ("device_id", args.device_id),
    ):
        if value is not None:
            data[key] = value
    if args.mqtt is not None:
        data["hub"]["transport"] = "mqtt"
        data["hub"]["mqtt"]["url"] = args.mqtt
    if args.health_interval is not None:
        data["health"]["interval_s"] = args.health_interval
        if data["hub"]["transport"] == "none":
            # Asking for health reports without a hub: show them on stdout.
            data["hub"]["transport"] = "console"
    return parse_config(data, base_dir=Path.cwd())


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help(sys.stderr)
        sys.exit(EXIT_CONFIG)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    from device_agent.runner import run_agent

    sys.exit(run_agent(config))
