"""The agent config: one typed value that the packager writes, the hub updates and the agent runs.

The file format (YAML or JSON) is documented in ``docs/agent-config.md``; this module is its
single source of truth. Parsing is pure: a mapping in, an :class:`AgentConfig` out, or a
:class:`ConfigError` naming the offending field (``models[0].batching.max_batch_size``). Unknown
fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from device_agent.errors import ConfigError

CONFIG_VERSION = 1
DEFAULT_PORT = 5001  # Azure ML's scoring port, so existing clients find the agent.
PORT_ENV = "EDGE_AGENT_PORT"
LOG_LEVEL_ENV = "EDGE_AGENT_LOG_LEVEL"
IOTEDGE_INFER_INPUT = "infer"
IOTEDGE_INFER_OUTPUT = "inferResult"

GraphOptimization = Literal["disable", "basic", "extended", "all"]
ExecutionMode = Literal["sequential", "parallel"]
HubTransport = Literal["none", "console", "mqtt", "iothub", "iotedge"]
LogLevel = Literal["debug", "info", "warning", "error"]

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 64 * 1024 * 1024
    # Keys accepted as `Authorization: Bearer <key>`; empty means no auth.
    api_keys: tuple[str, ...] = ()
    # Name of an environment variable holding one more key (keeps secrets out of the file).
    api_key_env: str | None = None
    mqtt_inference: bool = True


@dataclass(frozen=True)
class SessionConfig:
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_threads: int = 0
    graph_optimization: GraphOptimization = "all"
    execution_mode: ExecutionMode = "sequential"


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = False
    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str = "1"
    # A local file; relative paths are resolved against the config file's folder.
    path: str | None = None
    # Where to download the file from when `path` is missing (desired state from a hub).
    url: str | None = None
    sha256: str | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    warmup: bool = True


@dataclass(frozen=True)
class ScoringConfig:
    # An Azure ML scoring script with init() / run(raw_data); served on POST /score.
    script: str | None = None
    # Exposed to the script as AZUREML_MODEL_DIR; defaults to the folder of the first model.
    model_dir: str | None = None


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS
    client_id: str | None = None  # default: the device id
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    topic_prefix: str = "edgekit"
    protocol: Literal["auto", "3.1.1", "5"] = "auto"
    keepalive_s: int = 30
    reconnect_max_delay_s: float = 30.0


@dataclass(frozen=True)
class IoTHubConfig:
    # Under IoT Edge the agent reads inference requests on module input IOTEDGE_INFER_INPUT and
    # answers on output IOTEDGE_INFER_OUTPUT; routes in a deployment name these (and output_name).
    # For transport "iothub": a device or module connection string, given directly or by env var.
    connection_string: str | None = None
    connection_string_env: str | None = "IOTHUB_DEVICE_CONNECTION_STRING"
    x509_cert_file: str | None = None
    x509_key_file: str | None = None
    ca_file: str | None = None  # server_verification_cert, for gateways and test hubs
    output_name: str = "health"  # module output used for telemetry under IoT Edge


@dataclass(frozen=True)
class HubConfig:
    transport: HubTransport = "none"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    iothub: IoTHubConfig = field(default_factory=IoTHubConfig)


@dataclass(frozen=True)
class HealthThresholds:
    cpu_percent: float = 90.0
    memory_percent: float = 90.0
    disk_percent: float = 95.0
    error_rate: float = 0.05


@dataclass(frozen=True)
class HealthConfig:
    interval_s: float = 30.0
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)


@dataclass(frozen=True)
class OutboxConfig:
    path: str = "outbox.sqlite"  # relative to data_dir
    max_messages: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class RollbackConfig:
    enabled: bool = True
    error_rate_threshold: float = 0.5
    watch_window_s: float = 60.0
    min_requests: int = 20


@dataclass(frozen=True)
class AgentConfig:
    version: int = CONFIG_VERSION
    device_id: str | None = None
    data_dir: str = "/var/lib/edge-agent"
    log_level: LogLevel = "info"
    log_format: Literal["json", "text"] = "json"
    server: ServerConfig = field(default_factory=ServerConfig)
    models: tuple[ModelConfig, ...] = ()
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    rollback: RollbackConfig = field(default_factory=RollbackConfig)


T = TypeVar("T")


def parse_config(data: Mapping[str, Any], base_dir: Path | None = None) -> AgentConfig:
    """Validate a config mapping; relative model paths are resolved against ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}")
    config = build(AgentConfig, data, "")
    _check_semantics(config)
    if base_dir is not None:
        config = resolve_paths(config, base_dir)
    return config


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read a YAML/JSON config file, validate it and apply environment overrides."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        data = {}
    config = parse_config(data, base_dir=path.resolve().parent)
    return apply_environment(config, os.environ if environ is None else environ)


def apply_environment(config: AgentConfig, environ: Mapping[str, str]) -> AgentConfig:
    """Environment overrides that container runtimes set (``EDGE_AGENT_PORT``,
    ``EDGE_AGENT_LOG_LEVEL``): a deployment manifest's module ``env`` reaches the agent this way."""
    port_text = environ.get(PORT_ENV)
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(PORT_ENV, f"expected a port number, got {port_text!r}") from None
        _check_port(PORT_ENV, port)
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
    level = environ.get(LOG_LEVEL_ENV)
    if level:
        allowed = get_args(LogLevel)
        if level not in allowed:
            raise ConfigError(LOG_LEVEL_ENV, f"expected one of {', '.join(allowed)}, got {level!r}")
        config = dataclasses.replace(config, log_level=typing.cast(LogLevel, level))
    return config


def resolve_paths(config: AgentConfig, base_dir: Path) -> AgentConfig:
    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str((base_dir / value).resolve())

    models = tuple(dataclasses.replace(m, path=absolute(m.path)) for m in config.models)
    scoring = dataclasses.replace(
        config.scoring, script=absolute(config.scoring.script), model_dir=absolute(config.scoring.model_dir)
    )
    return dataclasses.replace(
        config, models=models, scoring=scoring, data_dir=absolute(config.data_dir) or config.data_dir
    )


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config (or any part of it), as written to files and twins."""
    return typing.cast(dict[str, Any], _to_plain(config))


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def build(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from plain data, naming the field path in every error."""
    if not isinstance(data, Mapping):
        raise ConfigError(path or "<root>", f"expected a mapping, got {_describe(data)}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(where, f"unknown field; expected one of {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        where = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(where, "required field is missing")
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(path, f"got {value!r}; expected one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {_describe(value)}")
        return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), value, path)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        # YAML reads `version: 2` as an int; a version or id is text, so accept numbers here.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(path, f"expected text, got {_describe(value)}")
        return value
    raise ConfigError(path, f"unsupported type {hint!r}")  # pragma: no cover - a bug in this module


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"[:80]


def _check_port(where: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(where, f"port {port} is out of range 0-65535")


def _check_semantics(config: AgentConfig) -> None:
    import re

    if config.version != CONFIG_VERSION:
        raise ConfigError(
            "version", f"this agent reads config version {CONFIG_VERSION}, got {config.version}"
        )
    _check_port("server.port", config.server.port)
    if config.server.max_body_bytes <= 0:
        raise ConfigError("server.max_body_bytes", "must be positive")
    seen: set[tuple[str, str]] = set()
    for i, model in enumerate(config.models):
        where = f"models[{i}]"
        if not re.match(MODEL_NAME_PATTERN, model.name):
            raise ConfigError(
                f"{where}.name",
                f"{model.name!r} is not a valid model name (letters, digits, '.', '_', '-'; at most 128)",
            )
        if not re.match(r"^[A-Za-z0-9._-]{1,64}$", model.version):
            raise ConfigError(f"{where}.version", f"{model.version!r} is not a valid version")
        if (model.name, model.version) in seen:
            raise ConfigError(where, f"model {model.name} version {model.version} is listed twice")
        seen.add((model.name, model.version))
        if model.path is None and model.url is None:
            raise ConfigError(where, "give the model file as 'path' or 'url'")
        if model.sha256 is not None and not re.match(r"^[0-9a-f]{64}$", model.sha256):
            raise ConfigError(f"{where}.sha256", "expected 64 lowercase hex digits")
        if not model.providers:
            raise ConfigError(f"{where}.providers", "list at least one execution provider")
        for j, provider in enumerate(model.providers):
            if not provider.endswith("ExecutionProvider"):
                raise ConfigError(
                    f"{where}.providers[{j}]",
                    f"{provider!r} is not an ONNX Runtime provider name (e.g. CUDAExecutionProvider)",
                )
        if model.batching.max_batch_size < 1:
            raise ConfigError(f"{where}.batching.max_batch_size", "must be at least 1")
        if model.batching.max_queue_delay_ms < 0:
            raise ConfigError(f"{where}.batching.max_queue_delay_ms", "must not be negative")
        if model.session.intra_op_threads < 0 or model.session.inter_op_threads < 0:
            raise ConfigError(f"{where}.session", "thread counts must not be negative")
    if config.health.interval_s <= 0:
        raise ConfigError("health.interval_s", "must be positive")
    if config.hub.mqtt.topic_prefix.strip("/") != config.hub.mqtt.topic_prefix or any(
        c in config.hub.mqtt.topic_prefix for c in "+#"
    ):
        raise ConfigError("hub.mqtt.topic_prefix", "must not start/end with '/' or contain '+' or '#'")
