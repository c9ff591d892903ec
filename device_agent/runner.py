"""Process lifecycle of ``edge-agent run``: logging, start-up, serving, signals, draining.

Order: bind the port and answer liveness at once; load and warm the models in the pool (readiness
turns 200 when all are in); start the hub side if configured. SIGTERM/SIGINT stop accepting new
connections, let in-flight requests finish, then stop the hub task and the batchers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from device_agent.config import AgentConfig
from device_agent.errors import AgentError, ConfigError
from device_agent.http_server import HttpServer
from device_agent.metrics import MetricsRegistry
from device_agent.repository import ModelRepository
from device_agent.scoring import ScoringScript

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 30
HUB_STOP_TIMEOUT_S = 10.0
# Attributes every LogRecord has; anything else came in through `extra=` and is logged as a field.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run_agent(config: AgentConfig) -> int:
    """Serve until signalled; returns the process exit code."""
    setup_logging(config.log_level, config.log_format)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # Windows, or a minimal install: asyncio's own loop works, slower
        pass
    try:
        return asyncio.run(_serve(config))
    except AgentError as exc:
        log.error("agent stopped", extra={"error": str(exc)})
        return 2


def _threads() -> int:
    # ONNX Runtime parallelises inside a call; a few pool threads overlap decoding with running.
    return max(2, min(8, os.cpu_count() or 2))


async def _serve(config: AgentConfig) -> int:
    started = time.perf_counter()
    hub_main = _hub_entry(config)
    executor = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="infer")
    metrics = MetricsRegistry()
    repository = ModelRepository(executor, metrics, Path(config.data_dir))
    scoring = _scoring(config, executor)
    from device_agent.http_app import HttpApp

    env_keys = _env_api_keys(config)
    app = HttpApp(
        repository,
        metrics,
        api_keys=(*config.server.api_keys, *env_keys),
        max_body_bytes=config.server.max_body_bytes,
        scoring=scoring,
    )
    sock = _bind(config.server.host, config.server.port)
    server = HttpServer(app)
    stop_requested = asyncio.Event()  # a signal, or a failed start-up
    hub_stop = asyncio.Event()  # tells the hub side to stop, once HTTP has drained
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, server, stop_requested, sig)

    await server.start(sock)
    port = sock.getsockname()[1]
    log.info("listening", extra={"host": config.server.host, "port": port})

    exit_code = 0
    hub_task: asyncio.Task[None] | None = None
    try:
        await repository.apply_models(config.models)
        if scoring is not None:
            await loop.run_in_executor(executor, scoring.load)
            app.scoring_ready = True
        log.info(
            "ready",
            extra={
                "port": port,
                "models": [f"{m.name}:{m.version}" for m in config.models],
                "startup_s": round(time.perf_counter() - started, 3),
            },
        )
        if hub_main is not None:

            def set_api_keys(keys: tuple[str, ...]) -> None:
                # The hub replaces the config's keys; the one from api_key_env stays accepted.
                app.set_api_keys((*keys, *env_keys))

            hub_task = loop.create_task(hub_main(config, repository, hub_stop, set_api_keys), name="hub")
            hub_task.add_done_callback(_report_hub_exit)
    except AgentError as exc:
        log.error("start-up failed; stopping", extra={"error": str(exc)})
        exit_code = 3
        stop_requested.set()
    except Exception:  # a bug at start must stop the agent, not leave it live and never ready
        log.exception("start-up failed unexpectedly; stopping")
        exit_code = 3
        stop_requested.set()

    await stop_requested.wait()
    cut = await server.shutdown(GRACEFUL_SHUTDOWN_S)
    if cut:
        log.warning("requests still running after the grace period were cut", extra={"connections": cut})
    hub_stop.set()
    if hub_task is not None:
        try:
            await asyncio.wait_for(hub_task, HUB_STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("hub task did not stop in time; cancelled")
        except Exception:
            pass  # already reported by _report_hub_exit
    await repository.close()
    executor.shutdown(wait=True)
    log.info("stopped", extra={"exit_code": exit_code})
    return exit_code


def _report_hub_exit(task: asyncio.Task[None]) -> None:
    # Serving goes on without the hub; say so at once rather than at shutdown.
    if not task.cancelled() and task.exception() is not None:
        log.error("hub side stopped; serving continues without it", extra={"error": repr(task.exception())})


def _hub_entry(config: AgentConfig) -> Any:
    """The hub side's entry point, or None without a hub; checked before anything starts."""
    if config.hub.transport == "none":
        return None
    try:
        from device_agent.hub import supervisor
    except ImportError as exc:
        raise ConfigError(
            "hub.transport",
            f"hub support is not installed in this agent ({exc}); use transport 'none'",
        ) from exc
    return supervisor.run_hub


def _on_signal(server: HttpServer, stop_requested: asyncio.Event, sig: int) -> None:
    if stop_requested.is_set() and sig == signal.SIGINT:
        # A second Ctrl+C: stop waiting for in-flight requests.
        server.force()
    log.info("signal received; draining in-flight requests", extra={"signal": signal.Signals(sig).name})
    stop_requested.set()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("server.port", f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _env_api_keys(config: AgentConfig) -> tuple[str, ...]:
    """The key named by ``server.api_key_env``, if any (checked at start)."""
    if not config.server.api_key_env:
        return ()
    value = os.environ.get(config.server.api_key_env)
    if not value:
        raise ConfigError(
            "server.api_key_env", f"environment variable {config.server.api_key_env} is not set or empty"
        )
    return (value,)


def _scoring(config: AgentConfig, executor: ThreadPoolExecutor) -> ScoringScript | None:
    if config.scoring.script is None:
        return None
    if config.scoring.model_dir is not None:
        model_dir = Path(config.scoring.model_dir)
    elif config.models and config.models[0].path is not None:
        model_dir = Path(config.models[0].path).parent
    else:
        model_dir = Path(config.data_dir) / "models"
    return ScoringScript(Path(config.scoring.script), model_dir, executor)
