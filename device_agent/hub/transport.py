"""The one interface the rest of the agent uses to talk to a hub.

A transport owns its connection (and its reconnects) and turns the hub's traffic into three
async streams — desired states, commands, inference requests — plus three outgoing operations:
telemetry (acknowledged), reported state (latest wins) and replies carried by the requests
themselves. Everything above it (supervisor, outbox sender, reconciler) is transport-neutral.

Streams are backed by asyncio queues filled from the transport's own threads or tasks through
the loop given at :meth:`Transport.start`; the base class does that plumbing once.
"""

from __future__ import annotations

import abc
import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Respond = Callable[[int, Any], Awaitable[None]]
RespondBytes = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class Telemetry:
    """One outgoing message. ``kind`` ("health") picks the topic or module output."""

    kind: str
    body: bytes
    properties: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    content_encoding: str = "utf-8"


@dataclass(frozen=True)
class CommandRequest:
    name: str
    payload: Any
    respond: Respond  # (status, payload): 200 ok, 400 bad payload, 404 unknown, 500 failure


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    body: bytes  # Open Inference Protocol v2 JSON request
    respond: RespondBytes  # the v2 JSON response (or error document)


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Apply a JSON merge patch in place (nested objects merge, ``None`` deletes)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Transport(abc.ABC):
    """Base of every transport. Subclasses implement the abstract methods and feed the streams
    with :meth:`_push_desired`, :meth:`_push_command` and :meth:`_push_inference`."""

    name = "transport"

    def __init__(self) -> None:
        self.connected = asyncio.Event()  # set while a connection is up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._desired: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._commands: asyncio.Queue[CommandRequest] = asyncio.Queue()
        self._inference: asyncio.Queue[InferenceRequest] = asyncio.Queue()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("transport not started")
        return self._loop

    async def start(self) -> None:
        """Begin connecting in the background; returns at once (use ``connected`` to wait)."""
        self._loop = asyncio.get_running_loop()
        await self._start()

    @abc.abstractmethod
    async def _start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Say goodbye where the protocol allows it (status offline) and disconnect."""

    @abc.abstractmethod
    def send_telemetry(self, message: Telemetry) -> Awaitable[None]:
        """Hand ``message`` to the connection now, in call order; the awaitable completes when
        the hub acknowledged it and raises :class:`~device_agent.errors.HubError` if it is lost."""

    @abc.abstractmethod
    async def report_state(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the reported state (``edgekit`` and ``health`` keys)."""

    # streams ---------------------------------------------------------------------------------
    async def desired_states(self) -> AsyncIterator[dict[str, Any]]:
        """Each full desired ``edgekit`` document, as first read after a connect and on changes."""
        while True:
            yield await self._desired.get()

    async def commands(self) -> AsyncIterator[CommandRequest]:
        while True:
            yield await self._commands.get()

    async def inference_requests(self) -> AsyncIterator[InferenceRequest]:
        while True:
            yield await self._inference.get()

    # for subclasses: thread-safe feeding ----------------------------------------------------
    def _threadsafe(self, callback: Callable[..., object], *args: object) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(callback, *args)

    def _push_desired(self, document: dict[str, Any]) -> None:
        self._threadsafe(self._desired.put_nowait, document)

    def _push_command(self, request: CommandRequest) -> None:
        self._threadsafe(self._commands.put_nowait, request)

    def _push_inference(self, request: InferenceRequest) -> None:
        self._threadsafe(self._inference.put_nowait, request)

    def _set_connected(self, up: bool) -> None:
        self._threadsafe(self.connected.set if up else self.connected.clear)
