"""A lean HTTP/1.1 server for the agent's ASGI app, on ``httptools`` and the running event loop.

Why not uvicorn: on a tiny model a request costs ~50 µs of the agent's one core, and uvicorn's
generic ASGI machinery (per-request message dicts, header re-validation, two socket writes per
response) was a third of it. This server does only what the agent's front end needs:

- HTTP/1.1 and 1.0, keep-alive, pipelined requests answered in order, ``Expect: 100-continue``;
- request bodies streamed to the app (``Content-Length`` or chunked), so the app can refuse an
  oversized body from its header before it is read; reading pauses while a connection's
  unread body or pipeline grows, so a fast client cannot fill the agent's memory;
- a response with ``Content-Length`` and one body goes out in one write; others are chunked,
  and a streaming app waits while the client reads slower than it writes;
- idle keep-alive connections close after ``keepalive_s``; malformed requests get 400 and close;
- :meth:`HttpServer.shutdown` stops accepting, lets in-flight requests finish (closing idle
  connections at once) and closes what is left after the grace period.

The app is any ASGI 3 callable of ``http`` scopes; lifespan and websockets are not served.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# Pause reading from a connection once this much request body is buffered unread by the app.
HIGH_WATER_BYTES = 1 << 20
# ... or once this many pipelined requests wait behind the one being answered.
MAX_PIPELINED = 8

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


class _Exchange:
    """One request and its response on a connection."""

    __slots__ = (
        "body",
        "body_done",
        "body_event",
        "buffered",
        "chunked",
        "connection",
        "disconnected",
        "expect_continue",
        "head",
        "headers_out",
        "headers_sent",
        "keep_alive",
        "response_done",
        "response_started",
        "scope",
        "status",
    )

    def __init__(self, connection: _Connection, scope: dict[str, Any], keep_alive: bool) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self.head = scope["method"] == "HEAD"
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.body_done = False
        self.body_event = asyncio.Event()
        self.expect_continue = False
        self.disconnected = False
        self.response_started = False
        self.response_done = False
        self.chunked = False
        self.status = 200
        self.headers_out: list[tuple[bytes, bytes]] = []
        self.headers_sent = False

    async def receive(self) -> Message:
        if self.disconnected:
            return {"type": "http.disconnect"}
        if self.expect_continue:
            self.expect_continue = False
            self.connection.write(_CONTINUE)
        while not self.body and not self.body_done:
            self.body_event.clear()
            self.connection.resume_reading()
            await self.body_event.wait()
            if self.disconnected:
                return {"type": "http.disconnect"}
        if self.body:
            chunk = self.body.popleft() if len(self.body) == 1 else b"".join(self._drain())
            self.buffered -= len(chunk)
            self.connection.resume_reading()
        else:
            chunk = b""
        return {"type": "http.request", "body": chunk, "more_body": not (self.body_done and not self.body)}

    def _drain(self) -> list[bytes]:
        chunks = list(self.body)
        self.body.clear()
        return chunks

    async def send(self, message: Message) -> None:
        if self.disconnected or self.response_done:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("http.response.start sent twice")
            self.response_started = True
            self.status = int(message["status"])
            self.headers_out = list(message.get("headers", ()))
            return
        if kind != "http.response.body" or not self.response_started:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not self.headers_sent:
            self.headers_sent = True
            head = self._head(more, len(body))
            if self.head:
                self.connection.write(head)
            elif self.chunked:
                self.connection.write(head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b""))
            else:
                self.connection.write(head + body)  # one write: headers and body together
        elif not self.head and body:
            self.connection.write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)
        if not more:
            if self.chunked and not self.head:
                self.connection.write(b"0\r\n\r\n")
            self.response_done = True
        elif not self.connection.writable.is_set():
            # A slow reader: hold the app until the socket buffer drains, rather than buffering
            # a whole streamed response in memory.
            await self.connection.writable.wait()

    def _head(self, more: bool, first_body_length: int) -> bytes:
        lines = [_status_line(self.status)]
        has_length = False
        for name, value in self.headers_out:
            lower = name.lower()
            if lower == b"content-length":
                has_length = True
            elif lower == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            lines += [name, b": ", value, b"\r\n"]
        if not has_length and self.status not in (204, 304):
            if more:
                # The length is unknown until the app is done: stream it chunked.
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            elif not self.head:
                lines.append(b"content-length: %d\r\n" % first_body_length)
        if self.connection.server.draining:
            self.keep_alive = False  # tell the client now, not by a reset after the response
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs them through the app one at a time."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Exchange] = deque()  # parsed (at least their headers), in order
        self.parsing: _Exchange | None = None
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.closing = False
        self.idle_since = time.monotonic()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._client: tuple[str, int] | None = None
        self.writable = asyncio.Event()  # cleared while the transport's write buffer is full
        self.writable.set()

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small responses go out at once instead of waiting for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self.writable.set()
        for exchange in (*self.pending, *([self.parsing] if self.parsing else [])):
            exchange.disconnected = True
            exchange.body_event.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, b"protocol upgrades are not served")
        except httptools.HttpParserError as exc:
            self._refuse(400, b"malformed HTTP request: " + str(exc).encode("latin-1", "replace"))

    # --- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parsed = httptools.parse_url(self._url)
        raw_path: bytes = parsed.path
        method = self.parser.get_method().decode("ascii")
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": self.parser.get_http_version(),
            "server": self.server.address,
            "client": self._client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": unquote(raw_path.decode("latin-1")) if b"%" in raw_path else raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self._headers,
        }
        exchange = _Exchange(self, scope, self.parser.should_keep_alive() and not self.closing)
        exchange.expect_continue = (b"expect", b"100-continue") in self._headers
        self.parsing = exchange
        self.pending.append(exchange)
        if self.task is None:
            self.task = self.server.loop.create_task(self._serve(), name="http-connection")
        elif len(self.pending) > MAX_PIPELINED:
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None or exchange.disconnected:
            return
        exchange.body.append(body)
        exchange.buffered += len(body)
        exchange.body_event.set()
        if exchange.buffered > HIGH_WATER_BYTES:
            self.pause_reading()

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.body_done = True
            exchange.body_event.set()
        self.parsing = None

    # --- serving ------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self.pending and not self.closing:
                exchange = self.pending[0]
                await self._run(exchange)
                self.pending.popleft()
                if not exchange.keep_alive or self.server.draining:
                    self._close()
                    return
                if not exchange.body_done:
                    # The app answered without reading the whole body: the connection's framing
                    # is unknown from here, so it cannot carry another request.
                    self._close()
                    return
                self.resume_reading()
        finally:
            self.task = None
            self.idle_since = time.monotonic()

    async def _run(self, exchange: _Exchange) -> None:
        try:
            await self.server.app(exchange.scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("unhandled error in the HTTP app", extra={"path": exchange.scope["path"]})
            if not exchange.response_started:
                exchange.keep_alive = False
                await exchange.send({"type": "http.response.start", "status": 500, "headers": []})
                await exchange.send({"type": "http.response.body", "body": b""})
            else:
                self._close()
            return
        if not exchange.response_done and not exchange.disconnected:
            if not exchange.response_started:
                exchange.keep_alive = False
                await exchange.send({"type": "http.response.start", "status": 500, "headers": []})
                await exchange.send({"type": "http.response.body", "body": b""})
            else:
                self._close()  # a half-sent response: the client must not wait for the rest

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.paused or self.transport is None or self.closing:
            return
        if len(self.pending) <= MAX_PIPELINED and all(e.buffered <= HIGH_WATER_BYTES for e in self.pending):
            self.paused = False
            self.transport.resume_reading()

    def _refuse(self, status: int, message: bytes) -> None:
        if self.task is not None:
            # A response is being written on this connection: a 400 now would interleave with it.
            self._close()
            return
        body = message + b"\n"
        self.write(
            _status_line(status)
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def idle(self) -> bool:
        return self.task is None and not self.pending

    def close_if_idle(self, keepalive_s: float, now: float) -> None:
        if self.idle and (self.server.draining or now - self.idle_since > keepalive_s):
            self._close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()


class HttpServer:
    """Serves ``app`` on an already bound, listening socket."""

    def __init__(self, app: App, keepalive_s: float = 5.0) -> None:
        self.app = app
        self.keepalive_s = keepalive_s
        self.connections: set[_Connection] = set()
        self.draining = False
        self._forced = False
        self.address: tuple[str, int] | None = None
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        name = sock.getsockname()
        self.address = (str(name[0]), int(name[1]))
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
        self._reaper = self.loop.create_task(self._reap_idle(), name="http-keepalive-reaper")

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.keepalive_s))
            now = time.monotonic()
            for connection in list(self.connections):
                connection.close_if_idle(self.keepalive_s, now)

    def force(self) -> None:
        """Stop waiting for in-flight requests (a second Ctrl+C during a drain)."""
        self._forced = True

    async def shutdown(self, grace_s: float) -> int:
        """Stop accepting, finish in-flight requests (up to ``grace_s``); returns how many were cut."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace_s
        while True:
            now = time.monotonic()
            for connection in list(self.connections):
                connection.close_if_idle(self.keepalive_s, now)
            busy = [c for c in self.connections if not c.idle]
            if not busy or now >= deadline or self._forced:
                break
            await asyncio.sleep(0.02)
        for connection in busy:
            connection.abort()
        if self._reaper is not None:
            self._reaper.cancel()
        return len(busy)
