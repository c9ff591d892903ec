"""The hub side of a running agent: one transport, and the loops that use it.

:func:`run_hub` is what the runner starts as a named task. It opens the outbox, starts the
configured transport and runs, each as a named task until ``stop`` is set:

    hub-sender      outbox -> transport, deleting on ack
    hub-health      a health report every interval: outbox (telemetry) + reported ``health``
    hub-desired     desired states -> Reconciler (download, verify, swap, report, rollback)
    hub-commands    commands / direct methods -> Commands
    hub-inference   MQTT / module-input inference requests -> host.infer_json

With ``hub.transport: console`` it runs the same pipeline over :class:`ConsoleTransport`, printing
health reports to stdout (``none`` runs no hub side at all).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from device_agent.config import AgentConfig
from device_agent.errors import AgentError, ConfigError
from device_agent.health import HealthCollector, compact_summary
from device_agent.host import ModelHost
from device_agent.hub.commands import Commands
from device_agent.hub.desired import Reconciler, RuntimeSettings, clear_staging, served_to_report
from device_agent.hub.sender import OutboxSender
from device_agent.hub.transport import InferenceRequest, Transport
from device_agent.outbox import Limits, Outbox

log = logging.getLogger(__name__)


def resolve_device_id(config: AgentConfig, environ: dict[str, str] | None = None) -> str:
    """The configured id, else the hub identity (connection string / IoT Edge), else the host name."""
    env = dict(os.environ) if environ is None else environ
    if config.device_id:
        return config.device_id
    if config.hub.transport == "iotedge" and env.get("IOTEDGE_DEVICEID"):
        return env["IOTEDGE_DEVICEID"]
    if config.hub.transport == "iothub":
        iothub = config.hub.iothub
        text = iothub.connection_string or (
            env.get(iothub.connection_string_env) if iothub.connection_string_env else None
        )
        for part in (text or "").split(";"):
            key, _, value = part.partition("=")
            if key == "DeviceId" and value:
                return value
    return socket.gethostname()


def make_transport(config: AgentConfig, device_id: str) -> Transport:
    transport = config.hub.transport
    if transport == "mqtt":
        from device_agent.hub.mqtt_transport import MqttTransport

        return MqttTransport(config.hub.mqtt, device_id)
    if transport in ("iothub", "iotedge"):
        from device_agent.hub.iothub_transport import IoTHubTransport

        return IoTHubTransport(config.hub.iothub, edge=transport == "iotedge")
    if transport == "console":
        from device_agent.hub.console import ConsoleTransport

        return ConsoleTransport()
    raise ConfigError("hub.transport", f"unknown transport {transport!r}")


class HubSession:
    """The loops of :func:`run_hub` over one transport; tests build one with any transport."""

    def __init__(
        self,
        config: AgentConfig,
        host: ModelHost,
        transport: Transport,
        device_id: str,
        set_api_keys: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.transport = transport
        self.device_id = device_id
        data_dir = Path(config.data_dir)
        self.outbox = Outbox(
            data_dir / config.outbox.path,
            Limits(config.outbox.max_messages, config.outbox.max_bytes, config.outbox.max_age_s),
        )
        self.settings = RuntimeSettings.from_config(config)
        self.collector = HealthCollector(device_id, data_dir, config.health.thresholds)
        self.sender = OutboxSender(self.outbox, transport)
        self.reconciler = Reconciler(host, data_dir, self.settings, transport.report_state, set_api_keys)
        self.commands = Commands(host, self.health_report, on_models_changed=self._models_changed)
        self._children: set[asyncio.Task[None]] = set()
        clear_staging(data_dir)

    def _collect(self) -> dict[str, Any]:
        # The thresholds as they are now: a desired state may have changed them since the start.
        return self.collector.collect(
            self.host.served_models(),
            self.host.stats(),
            self.outbox.stats(),
            thresholds=self.settings.health.thresholds,
        )

    async def health_report(self) -> dict[str, Any]:
        """A fresh full report (as ``get_health`` answers), not queued."""
        report = self._collect()
        report["seq"] = self.outbox.last_seq("health")
        return report

    def queue_health(self) -> dict[str, Any]:
        """Collect a report, queue it durably with the next ``seq`` and return it."""
        report = self._collect()

        def body(seq: int) -> bytes:
            report["seq"] = seq
            return json.dumps(report, separators=(",", ":")).encode()

        self.outbox.put_sequenced("health", body, {"type": "health"})
        self.sender.wake()
        return report

    async def run(self, stop: asyncio.Event) -> None:
        await self.transport.start()
        loops: list[Coroutine[Any, Any, None]] = [
            self.sender.run(),
            self._health_loop(),
            self._desired_loop(),
            self._command_loop(),
        ]
        names = ["hub-sender", "hub-health", "hub-desired", "hub-commands"]
        if self.config.server.mqtt_inference:
            loops.append(self._inference_loop())
            names.append("hub-inference")
        tasks = [asyncio.create_task(c, name=n) for c, n in zip(loops, names, strict=True)]
        stopper = asyncio.create_task(stop.wait(), name="hub-stop")
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task is stopper or task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            everything = [stopper, *tasks, *self._children]
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
            await self.reconciler.close()
            await self.transport.close()
            self.outbox.close()

    async def _health_loop(self) -> None:
        while True:
            report = self.queue_health()
            await self.transport.report_state({"health": compact_summary(report)})
            await asyncio.sleep(self.settings.health.interval_s)

    async def _desired_loop(self) -> None:
        async for document in self.transport.desired_states():
            await self.reconciler.apply(document)

    async def _command_loop(self) -> None:
        async for request in self.transport.commands():
            # Each command in its own task: a slow reload must not hold up a ping.
            self._spawn(self.commands.handle(request), f"hub-command-{request.name}")

    async def _inference_loop(self) -> None:
        async for request in self.transport.inference_requests():
            self._spawn(self._infer(request), f"hub-infer-{request.model}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)

    async def _infer(self, request: InferenceRequest) -> None:
        try:
            body = await self.host.infer_json(request.model, None, request.body)
        except AgentError as exc:  # invalid request, unknown model, runtime failure
            # The v2 error document, as the HTTP front end sends it.
            body = json.dumps({"error": str(exc)}).encode()
        await request.respond(body)

    async def _models_changed(self, status: str) -> None:
        models = self.host.served_models()
        await self.transport.report_state({"edgekit": {"status": status, "models": served_to_report(models)}})


async def run_hub(
    config: AgentConfig,
    host: ModelHost,
    stop: asyncio.Event,
    set_api_keys: Callable[[tuple[str, ...]], None] | None = None,
) -> None:
    """Run the hub side until ``stop`` is set (the runner's named task)."""
    device_id = resolve_device_id(config)
    transport = make_transport(config, device_id)
    log.info("hub side starting", extra={"transport": transport.name, "device_id": device_id})
    await HubSession(config, host, transport, device_id, set_api_keys).run(stop)
