"""Pure planning: what a module folder contains, computed from values (no file or engine I/O).

``make_plan`` turns model versions, a target and options into a :class:`ModulePlan`: the text of
every generated file plus the list of files to copy in (model blobs, the scoring script, the
agent's code). Tests compare the rendered files with golden files.
"""

from __future__ import annotations

import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from device_agent.config import (
    IOTEDGE_INFER_INPUT,
    IOTEDGE_INFER_OUTPUT,
    AgentConfig,
    HubConfig,
    HubTransport,
    ModelConfig,
    ScoringConfig,
    ServerConfig,
    config_to_dict,
    parse_config,
)
from device_agent.errors import ConfigError
from edge_toolkit.errors import PackagingError
from edge_toolkit.packager.targets import Target

MODULE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
AGENT_UID = 10001  # non-root; numeric so the base image needs no useradd
DEFAULT_PORT = 5001  # Azure ML's scoring port
DEFAULT_REPOSITORY_HOST = "localhost:5000"
SCHEMA_VERSION = "0.0.1"
MODULE_JSON = "module.json"
PLAN_JSON = "edgekit-module.json"  # what build/push need to know that module.json does not say
DEPLOYMENT_JSON = "module.deployment.json"
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class PlannedModel:
    """One registered model version going into the module."""

    name: str
    version: int
    sha256: str
    size: int

    @property
    def path(self) -> str:
        """Where the file lives in the module folder and, relative to /app, in the image."""
        return f"models/{self.name}/{self.version}/model.onnx"


@dataclass(frozen=True)
class Resources:
    cpus: float | None = None
    memory_bytes: int | None = None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageOptions:
    module_name: str
    target: Target
    platforms: tuple[str, ...]
    models: tuple[PlannedModel, ...]
    agent_requirements: tuple[str, ...]
    user_requirements: tuple[str, ...] = ()
    score_script: str | None = None  # file name inside score/ (e.g. "score.py")
    resources: Resources = field(default_factory=Resources)
    port: int = DEFAULT_PORT
    module_version: str = "0.0.1"
    repository: str | None = None  # default: localhost:5000/<module_name>
    hub_transport: str = "none"
    edgekit_version: str = "0"
    description: str = ""


@dataclass(frozen=True)
class ModulePlan:
    options: PackageOptions
    files: dict[str, str]  # relative path -> text content
    agent_config: AgentConfig

    @property
    def image_repository(self) -> str:
        return self.options.repository or f"{DEFAULT_REPOSITORY_HOST}/{self.options.module_name}"


def parse_memory(text: str) -> int:
    """``512m``, ``1g``, ``1.5GiB``, ``1048576`` -> bytes (Docker's binary units)."""
    match = _MEMORY_RE.match(text.strip())
    if not match:
        raise PackagingError(f"memory {text!r} is not a size; use e.g. 512m or 2g")
    value = float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]
    if value < 6 * 1024**2:
        raise PackagingError(f"memory {text!r} is below Docker's minimum of 6m")
    return int(value)


def make_plan(options: PackageOptions) -> ModulePlan:
    _check_options(options)
    agent_config = _agent_config(options)
    files: dict[str, str] = {
        MODULE_JSON: _json(_module_json(options, agent_config)),
        DEPLOYMENT_JSON: _json(_deployment_fragment(options, agent_config)),
        PLAN_JSON: _json(_plan_json(options)),
        "agent.yaml": _agent_yaml(agent_config),
        "requirements/agent.txt": "\n".join(options.agent_requirements) + "\n",
        "requirements/user.txt": "".join(f"{line}\n" for line in options.user_requirements),
        ".dockerignore": "**/__pycache__\n**/*.pyc\n",
    }
    for platform in options.platforms:
        files[f"Dockerfile.{platform}"] = render_dockerfile(options, platform)
    return ModulePlan(options=options, files=files, agent_config=agent_config)


def render_dockerfile(options: PackageOptions, platform: str) -> str:
    from edge_toolkit.packager.targets import template_text

    models = ",".join(f"{m.name}:{m.version}" for m in options.models)
    first = options.models[0]
    static_labels = {
        "org.opencontainers.image.title": options.module_name,
        "org.opencontainers.image.description": options.description
        or f"edge-toolkit module {options.module_name} ({options.target.name})",
        "org.opencontainers.image.version": options.module_version,
        "org.opencontainers.image.source": "https://github.com/edge-toolkit/edge-toolkit",
        "org.opencontainers.image.vendor": "edge-toolkit",
        "io.edgekit.target": options.target.name,
        "io.edgekit.platform": platform,
        "io.edgekit.edgekit-version": options.edgekit_version,
    }
    model_labels = {
        "io.edgekit.models": models,
        "io.edgekit.model.name": first.name,
        "io.edgekit.model.version": str(first.version),
        "io.edgekit.model.sha256": first.sha256,
    }
    env = "".join(f" {k}={_quote(v)}" for k, v in sorted(options.target.env.items()))
    values = {
        "edgekit_version": options.edgekit_version,
        "module": options.module_name,
        "target": options.target.name,
        "platform": platform,
        "base_image": options.target.base_image,
        "python_version": options.target.python_version,
        "uid": str(AGENT_UID),
        "port": str(options.port),
        "env": env,
        "static_labels": _labels(static_labels),
        "model_labels": _labels(model_labels),
    }
    return render_template(template_text("Dockerfile.template"), values)


def render_template(template: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}``; a placeholder without a value is a bug in the template, so refuse it."""
    missing = sorted({m for m in _PLACEHOLDER_RE.findall(template) if m not in values})
    if missing:
        raise PackagingError(f"the Dockerfile template uses unknown placeholders: {', '.join(missing)}")
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _check_options(options: PackageOptions) -> None:
    if not MODULE_NAME_RE.match(options.module_name):
        raise PackagingError(
            f"module name {options.module_name!r} is not usable as an image name: use lowercase "
            "letters, digits, '.', '_' or '-' (at most 64), e.g. --module-name my-model"
        )
    if not VERSION_RE.match(options.module_version):
        raise PackagingError(f"module version {options.module_version!r} must look like 1.2.3")
    if not options.models:
        raise PackagingError("give at least one registered model (NAME[:VERSION])")
    names = [m.name for m in options.models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PackagingError(f"model {duplicates[0]} is listed twice; a module serves one version of each")
    if options.score_script is not None and PurePosixPath(options.score_script).suffix != ".py":
        raise PackagingError(f"scoring script {options.score_script!r} must be a .py file")
    if not 1 <= options.port <= 65535:
        raise PackagingError(f"port {options.port} is out of range 1-65535")
    if options.resources.cpus is not None and options.resources.cpus <= 0:
        raise PackagingError("--cpus must be positive")
    for device in options.resources.devices:
        if not device.startswith("/dev/"):
            raise PackagingError(f"device {device!r} must be a path under /dev")
    for line in options.user_requirements:
        if line.lstrip().startswith(("-e ", "--editable", "-r ", "--requirement")):
            raise PackagingError(
                f"requirement {line!r}: editable installs and nested files cannot be built offline; "
                "list the packages themselves"
            )


def _agent_config(options: PackageOptions) -> AgentConfig:
    transports = typing.get_args(HubTransport)
    if options.hub_transport not in transports:
        raise PackagingError(f"hub transport {options.hub_transport!r} is not one of {', '.join(transports)}")
    models = tuple(
        ModelConfig(
            name=m.name,
            version=str(m.version),
            path=m.path,
            sha256=m.sha256,
            providers=options.target.providers,
        )
        for m in options.models
    )
    scoring = ScoringConfig(
        script=None if options.score_script is None else f"score/{options.score_script}",
        model_dir=None,
    )
    try:
        config = parse_config(
            config_to_dict(
                AgentConfig(
                    data_dir="/var/lib/edge-agent",
                    server=ServerConfig(port=options.port),
                    models=models,
                    scoring=scoring,
                    hub=HubConfig(transport=typing.cast(HubTransport, options.hub_transport)),
                )
            )
        )
    except ConfigError as exc:
        # The agent would refuse this config at start; say so now, at packaging time.
        raise PackagingError(f"the generated agent config is invalid: {exc}") from exc
    return config


def _agent_yaml(config: AgentConfig) -> str:
    header = "# The device agent's config (docs/agent-config.md); paths are relative to /app.\n"
    return header + yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)


def _module_json(options: PackageOptions, config: AgentConfig) -> dict[str, Any]:
    return {
        "$schema-version": SCHEMA_VERSION,
        "description": options.description
        or f"ONNX model(s) {', '.join(f'{m.name}:{m.version}' for m in options.models)} "
        f"served by the edge-toolkit agent ({options.target.name})",
        "image": {
            "repository": options.repository or f"{DEFAULT_REPOSITORY_HOST}/{options.module_name}",
            "tag": {
                "version": options.module_version,
                "platforms": {p: f"./Dockerfile.{p}" for p in options.platforms},
            },
            "buildOptions": [],
            "contextPath": "./",
        },
        "language": "python",
        # The module's IoT Edge inputs and outputs, so `edgekit manifest` can check route ports.
        "edgekit": {
            "inputs": [IOTEDGE_INFER_INPUT],
            "outputs": [config.hub.iothub.output_name, IOTEDGE_INFER_OUTPUT],
        },
    }


def _deployment_fragment(options: PackageOptions, config: AgentConfig) -> dict[str, Any]:
    """The module's entry for a deployment template: createOptions, restart policy, twin."""
    port = f"{options.port}/tcp"
    host_config: dict[str, Any] = {"PortBindings": {port: [{"HostPort": str(options.port)}]}}
    if options.resources.cpus is not None:
        host_config["NanoCpus"] = round(options.resources.cpus * 1e9)
    if options.resources.memory_bytes is not None:
        host_config["Memory"] = options.resources.memory_bytes
    devices = list(dict.fromkeys([*options.target.devices, *options.resources.devices]))
    if devices:
        host_config["Devices"] = [
            {"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"} for d in devices
        ]
    if options.target.device_requests:
        host_config["DeviceRequests"] = [dict(r) for r in options.target.device_requests]
    create_options: dict[str, Any] = {
        "User": f"{AGENT_UID}:{AGENT_UID}",
        "ExposedPorts": {port: {}},
        "HostConfig": host_config,
    }
    desired_models = [
        {
            "name": m.name,
            "version": m.version,
            "path": m.path,
            "sha256": m.sha256,
            "providers": list(m.providers),
        }
        for m in config.models
    ]
    return {
        "version": "1.0",
        "type": "docker",
        "status": "running",
        "restartPolicy": "always",
        "createOptions": create_options,
        "desired": {"edgekit": {"revision": 1, "models": desired_models, "settings": {}}},
    }


def _plan_json(options: PackageOptions) -> dict[str, Any]:
    return {
        "format": 1,
        "module": options.module_name,
        "target": options.target.name,
        "base_image": options.target.base_image,
        "python_version": options.target.python_version,
        "platforms": list(options.platforms),
        "port": options.port,
        "models": [
            {"name": m.name, "version": m.version, "sha256": m.sha256, "size": m.size, "path": m.path}
            for m in options.models
        ],
        "score_script": options.score_script,
        "edgekit_version": options.edgekit_version,
    }


def _labels(labels: dict[str, str]) -> str:
    return " \\\n      ".join(f"{key}={_quote(value)}" for key, value in labels.items())


def _quote(value: str) -> str:
    # Dockerfile LABEL/ENV values: a double-quoted string with \ and " escaped, no newlines.
    if "\n" in value:
        raise PackagingError(f"value {value[:40]!r}… must fit on one line")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"
