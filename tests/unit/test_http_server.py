"""device_agent.http_server over real loopback sockets, with small ASGI apps and raw HTTP bytes:
framing (keep-alive, pipelining, HTTP/1.0, chunked bodies both ways, 100-continue), bad requests,
app failures, idle connections and the graceful drain."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from device_agent.http_server import HttpServer

Handler = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the method, path and the whole request body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(0.3)
    if scope["path"] == "/boom":
        raise RuntimeError("app bug")
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"ab", b"cd"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} ".encode() + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


async def refusing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuses by the headers alone, without reading the body (as a 413 does)."""
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"too big"})


async def _serve(app: Handler, keepalive_s: float = 5.0) -> tuple[HttpServer, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = HttpServer(app, keepalive_s=keepalive_s)
    await server.start(sock)
    return server, sock.getsockname()[1]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int((await reader.readline()).strip(), 16)) > 0:
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.read()
    return status, headers, body


def _run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /a?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /b%20c HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        answers = [await _read_response(reader) for _ in range(3)]
        assert [a[2] for a in answers] == [b"POST /a x=1 abc", b"GET /slow  ", b"GET /b c  "]
        assert all(a[0] == 200 and "connection" not in a[1] for a in answers)
        writer.close()
        await server.shutdown(1)

    _run(scenario())


def test_chunked_request_and_response_bodies() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert (await _read_response(reader))[2] == b"POST /c  abcde"
        status, headers, body = await _read_response(reader)
        assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"abcd")
        writer.close()
        await server.shutdown(1)

    _run(scenario())


def test_http_1_0_closes_and_expect_continue_is_answered() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = await _read_response(reader)
        assert (status, headers["connection"], body) == (200, "close", b"GET /old  ")
        assert await reader.read() == b""  # closed by the server

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(b"data")
        assert (await _read_response(reader))[2] == b"POST /e  data"
        writer.close()
        await server.shutdown(1)

    _run(scenario())


def test_malformed_request_gets_400_and_the_server_keeps_serving() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = await _read_response(reader)
        assert status == 400 and headers["connection"] == "close" and b"malformed" in body
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await _read_response(reader))[0] == 200
        writer.close()
        await server.shutdown(1)

    _run(scenario())


def test_app_failure_is_500_and_unread_body_closes_the_connection() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert status == 500 and headers["connection"] == "close"
        await server.shutdown(1)

        server, port = await _serve(refusing_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # The app answers from the headers; the rest of the body never comes, the framing is
        # lost, so the server must close rather than read the next bytes as a request.
        writer.write(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\npartial")
        status, _, body = await _read_response(reader)
        assert (status, body) == (413, b"too big")
        assert await reader.read() == b""
        await server.shutdown(1)

    _run(scenario())


def test_idle_keep_alive_connections_are_closed() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app, keepalive_s=0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await _read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 3) == b""
        await server.shutdown(1)

    _run(scenario())


def test_shutdown_finishes_in_flight_requests_and_refuses_new_connections() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        idle_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.1)
        cut = await server.shutdown(5)
        assert cut == 0
        status, headers, body = await _read_response(reader)
        assert (status, headers["connection"], body) == (200, "close", b"GET /slow  ")
        assert await idle_reader.read() == b""  # idle keep-alive connection closed at once
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("the server still accepts connections after shutdown")

    _run(scenario())


def test_shutdown_cuts_what_outlives_the_grace_period() -> None:
    async def scenario() -> None:
        server, port = await _serve(echo_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.05)
        assert await server.shutdown(0.05) == 1
        assert await reader.read() == b""

    _run(scenario())


def test_a_slow_reader_holds_a_streaming_app_back() -> None:
    sent: list[int] = []
    chunk = b"x" * (1 << 20)

    async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(64):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        server, port = await _serve(streaming_app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
        writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.5)  # not reading: the socket buffers fill up
        assert len(sent) < 32, f"the app ran ahead of the client by {len(sent)} MB"
        status, _, body = await _read_response(reader)
        assert status == 200 and len(body) == 64 * len(chunk) and len(sent) == 64
        writer.close()
        await server.shutdown(1)

    _run(scenario())
