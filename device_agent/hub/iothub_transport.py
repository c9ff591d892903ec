"""Azure IoT Hub / IoT Edge with ``azure-iot-device`` (2.14, async clients).

Which client:
  - ``iotedge``: ``IoTHubModuleClient.create_from_edge_environment()`` (the IOTEDGE_* variables and
    the workload API sign SAS tokens and give the trust bundle); telemetry goes to module output
    ``output_name`` so edgeHub routes it.
  - ``iothub``: a device or module client from a connection string (``ModuleId=`` picks the module
    client), with SAS; or X.509 when ``x509_cert_file``/``x509_key_file`` are set (the connection
    string then names HostName, DeviceId [, ModuleId, GatewayHostName]).

SDK facts this module works around: the SDK subscribes to twin responses lazily and does not
resubscribe after a reconnect, so the full twin is read with ``get_twin()`` after every connect
(desired patches missed while offline are covered by it). Handlers are plain functions, called
in the SDK's handler thread; they only hand work to our loop.

Telemetry is sent one message at a time by a worker task: the SDK runs each send in an executor
thread, so concurrent sends could overtake each other, and the outbox promises order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from azure.iot.device import X509, Message, MethodResponse
from azure.iot.device import exceptions as iot_exceptions
from azure.iot.device.aio import IoTHubDeviceClient, IoTHubModuleClient

from device_agent.config import IOTEDGE_INFER_INPUT, IOTEDGE_INFER_OUTPUT, IoTHubConfig
from device_agent.errors import ConfigError, HubError
from device_agent.hub.transport import CommandRequest, InferenceRequest, Telemetry, Transport, merge_patch

log = logging.getLogger(__name__)

# The SDK's constructors carry no annotations; typed aliases keep mypy strict everywhere else.
_new_message = cast(Callable[..., Message], Message)
_new_x509 = cast(Callable[..., X509], X509)

_SEND_TIMEOUT_S = 60.0
# Backoff between tries of one telemetry message that the hub did not take.
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0


def parse_connection_string(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("hub.iothub.connection_string", f"malformed part {key!r} (expected Key=Value)")
        parts[key.strip()] = value.strip()
    return parts


class IoTHubTransport(Transport):
    name = "iothub"

    def __init__(self, config: IoTHubConfig, edge: bool = False) -> None:
        super().__init__()
        self.config = config
        self.edge = edge
        self.name = "iotedge" if edge else "iothub"
        self._client: IoTHubDeviceClient | IoTHubModuleClient | None = None
        self._is_module = edge
        self._twin_desired: dict[str, Any] = {}
        self._unsent_reported: dict[str, Any] = {}  # patches made while offline, sent on connect
        self._sends: asyncio.Queue[tuple[Telemetry, asyncio.Future[None]]] = asyncio.Queue()
        self._sending: asyncio.Future[None] | None = None  # the message being sent (or retried)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # client construction ---------------------------------------------------------------------
    def _create_client(self) -> IoTHubDeviceClient | IoTHubModuleClient:
        common: dict[str, Any] = {"keep_alive": 30}
        if self.config.ca_file:
            try:
                with open(self.config.ca_file, encoding="utf-8") as handle:
                    common["server_verification_cert"] = handle.read()
            except OSError as exc:
                raise ConfigError("hub.iothub.ca_file", f"cannot read {self.config.ca_file}: {exc}") from exc
        if self.edge:
            try:
                return IoTHubModuleClient.create_from_edge_environment(**common)
            except (OSError, ValueError, iot_exceptions.ClientError) as exc:
                raise HubError(f"cannot create a module client from the IoT Edge environment: {exc}") from exc
        text = self.config.connection_string
        if text is None and self.config.connection_string_env:
            text = os.environ.get(self.config.connection_string_env)
        if not text:
            raise ConfigError(
                "hub.iothub.connection_string",
                "no connection string: set it or the environment variable "
                f"{self.config.connection_string_env}",
            )
        parts = parse_connection_string(text)
        self._is_module = "ModuleId" in parts
        try:
            if self.config.x509_cert_file and self.config.x509_key_file:
                x509 = _new_x509(cert_file=self.config.x509_cert_file, key_file=self.config.x509_key_file)
                if parts.get("GatewayHostName"):
                    common["gateway_hostname"] = parts["GatewayHostName"]
                if self._is_module:
                    return IoTHubModuleClient.create_from_x509_certificate(
                        x509, parts["HostName"], parts["DeviceId"], parts["ModuleId"], **common
                    )
                return IoTHubDeviceClient.create_from_x509_certificate(
                    x509, parts["HostName"], parts["DeviceId"], **common
                )
            client_class = IoTHubModuleClient if self._is_module else IoTHubDeviceClient
            return client_class.create_from_connection_string(text, **common)
        except KeyError as exc:
            raise ConfigError("hub.iothub.connection_string", f"missing {exc.args[0]}") from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError("hub.iothub.connection_string", str(exc)) from exc

    # connection ------------------------------------------------------------------------------
    async def _start(self) -> None:
        self._client = self._create_client()
        self._tasks = [
            asyncio.create_task(self._connect_loop(), name="iothub-connect"),
            asyncio.create_task(self._send_loop(), name="iothub-send"),
        ]

    async def _connect_loop(self) -> None:
        """Connect with a capped backoff; after that the SDK reconnects by itself, and this loop
        watches ``client.connected``: the SDK's connection-state event is not delivered for a
        connect that happens while its handler runner is still starting, so it is a fast path
        only, and every transition to connected reads the twin again (the SDK quirk above)."""
        client = self._client
        assert client is not None
        delay = 0.5
        while not self._closing:
            try:
                # Setting a handler enables its feature, which connects: with refused credentials
                # (a device not registered yet, a certificate being rotated) that raises, so it
                # is retried here with the connect rather than ending the hub side.
                self._install_handlers(client)
                await client.connect()
                break
            except (iot_exceptions.ClientError, iot_exceptions.OperationCancelled, OSError) as exc:
                log.warning(
                    "cannot connect to IoT Hub; retrying", extra={"error": str(exc), "delay_s": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        while not self._closing:
            self._observe(bool(client.connected))
            await asyncio.sleep(0.5)

    def _install_handlers(self, client: IoTHubDeviceClient | IoTHubModuleClient) -> None:
        client.on_twin_desired_properties_patch_received = self._on_desired_patch
        client.on_method_request_received = self._on_method
        client.on_message_received = self._on_message
        # The SDK annotates this handler as taking an argument, but calls it with none.
        state_handler: Any = self._on_connection_state
        client.on_connection_state_change = state_handler

    def _observe(self, up: bool) -> None:
        """Record the connection state (on our loop); a fresh connection re-reads the twin."""
        was_up = self.connected.is_set()
        if up == was_up:
            return
        log.info("IoT Hub connection state changed", extra={"connected": up})
        if up:
            self.connected.set()
            self._spawn_twin_refresh()
        else:
            self.connected.clear()

    def _on_connection_state(self) -> None:
        client = self._client
        self._threadsafe(self._observe, bool(client is not None and client.connected))

    def _spawn_twin_refresh(self) -> None:
        task = asyncio.create_task(self._refresh_twin(), name="iothub-get-twin")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _refresh_twin(self) -> None:
        assert self._client is not None
        try:
            twin = await self._client.get_twin()
        except iot_exceptions.ClientError as exc:
            log.warning("cannot read the twin after connecting", extra={"error": str(exc)})
            return
        self._twin_desired = dict(twin.get("desired") or {})
        self._emit_desired()
        if self._unsent_reported:
            await self.report_state({})

    def _emit_desired(self) -> None:
        document = self._twin_desired.get("edgekit")
        if isinstance(document, dict):
            self._push_desired(json.loads(json.dumps(document)))

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        unsent = [self._sending] if self._sending is not None else []
        while not self._sends.empty():
            unsent.append(self._sends.get_nowait()[1])
        for future in unsent:
            if not future.done():
                future.set_exception(HubError("the IoT Hub transport was closed before the hub acked"))
        if self._client is not None:
            try:
                await self._client.shutdown()
            except iot_exceptions.ClientError as exc:
                log.warning("IoT Hub client shutdown failed", extra={"error": str(exc)})
        self.connected.clear()

    # telemetry and state ---------------------------------------------------------------------
    def send_telemetry(self, message: Telemetry) -> Awaitable[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self._sends.put_nowait((message, future))
        return future

    async def _send_loop(self) -> None:
        while True:
            message, future = await self._sends.get()
            self._sending = future
            delay = _RETRY_FIRST_S
            while not future.done():
                try:
                    async with asyncio.timeout(_SEND_TIMEOUT_S):
                        await self._send(message)
                except (TimeoutError, iot_exceptions.ClientError, iot_exceptions.OperationCancelled) as exc:
                    # Retry this message before any queued behind it: failing it would have the
                    # sender hand it over again behind them, and the hub would see it out of order.
                    log.warning(
                        "IoT Hub did not take a message; retrying it",
                        extra={"kind": message.kind, "error": repr(exc), "retry_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                else:
                    future.set_result(None)

    async def _send(self, telemetry: Telemetry) -> None:
        assert self._client is not None
        message = _new_message(
            telemetry.body,
            content_encoding=telemetry.content_encoding,
            content_type=telemetry.content_type,
        )
        message.custom_properties = {"type": telemetry.kind, **dict(telemetry.properties)}
        if self.edge:
            assert isinstance(self._client, IoTHubModuleClient)
            await self._client.send_message_to_output(message, self.config.output_name)
        else:
            await self._client.send_message(message)

    async def report_state(self, patch: Mapping[str, Any]) -> None:
        # Latest wins: while offline, patches merge into one that is sent after the reconnect.
        merge_patch(self._unsent_reported, patch)
        if self._client is None or not self.connected.is_set():
            return
        pending, self._unsent_reported = self._unsent_reported, {}
        try:
            async with asyncio.timeout(_SEND_TIMEOUT_S):
                await self._client.patch_twin_reported_properties(pending)
        except (TimeoutError, iot_exceptions.ClientError) as exc:
            log.warning("cannot patch the reported properties", extra={"error": str(exc)})
            merge_patch(pending, self._unsent_reported)
            self._unsent_reported = pending

    # incoming --------------------------------------------------------------------------------
    def _on_desired_patch(self, patch: dict[str, Any]) -> None:
        patch = {k: v for k, v in patch.items() if k != "$version"}
        merge_patch(self._twin_desired, patch)
        if "edgekit" in patch:
            self._emit_desired()

    def _on_method(self, request: Any) -> None:
        async def respond(status: int, payload: Any) -> None:
            assert self._client is not None
            response = MethodResponse.create_from_method_request(request, status, payload)
            try:
                await self._client.send_method_response(response)
            except iot_exceptions.ClientError as exc:
                log.warning(
                    "cannot answer a direct method", extra={"method": request.name, "error": str(exc)}
                )

        self._push_command(CommandRequest(request.name, request.payload, respond))

    def _on_message(self, message: Any) -> None:
        if getattr(message, "input_name", None) != IOTEDGE_INFER_INPUT:
            log.info("ignoring a message", extra={"input": getattr(message, "input_name", None)})
            return
        properties = dict(message.custom_properties or {})
        model = properties.get("model")
        data = message.data if isinstance(message.data, bytes) else str(message.data).encode()
        if not model:
            log.warning("inference message without a 'model' property")
            return

        async def respond(body: bytes) -> None:
            assert isinstance(self._client, IoTHubModuleClient)
            reply = _new_message(body, content_encoding="utf-8", content_type="application/json")
            reply.custom_properties = {k: v for k, v in properties.items() if k in ("model", "id")}
            if message.correlation_id or message.message_id:
                reply.correlation_id = message.correlation_id or message.message_id
            await self._client.send_message_to_output(reply, IOTEDGE_INFER_OUTPUT)

        self._push_inference(InferenceRequest(str(model), data, respond))
