"""The HTTP front end: a bare ASGI callable (no framework), served by :mod:`device_agent.http_server`.

Routes: Open Inference Protocol v2 (``/v2/...``), Azure ML style ``POST /score``, Prometheus
``/metrics``. It only translates: HTTP in, service call, HTTP out, and maps our exceptions to status
codes. The hot path is kept short on purpose (one path split, one header scan, orjson) because at
tiny-model sizes the per-request Python work *is* the serving cost.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from device_agent import __version__, codecs
from device_agent.errors import (
    AgentError,
    InferenceRuntimeError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
)
from device_agent.metrics import MetricsRegistry
from device_agent.repository import ModelRepository
from device_agent.scoring import ScoringScript

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_METRICS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_OCTET = b"application/octet-stream"
_SERVER_METADATA = codecs.dumps(
    {"name": "edge-agent", "version": __version__, "extensions": ["binary_tensor_data"]}
)


class HttpError(Exception):
    """An HTTP-level refusal (auth, size, routing) before any model is involved."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


def status_for(exc: AgentError) -> int:
    """Our exception tree -> HTTP status (the only place that knows both)."""
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, InvalidRequestError):
        return 400
    if isinstance(exc, InferenceRuntimeError):
        return 500
    if isinstance(exc, ModelLoadError):
        return 503
    return 500


class HttpApp:
    def __init__(
        self,
        repository: ModelRepository,
        metrics: MetricsRegistry,
        api_keys: tuple[str, ...] = (),
        max_body_bytes: int = 64 * 1024 * 1024,
        scoring: ScoringScript | None = None,
    ) -> None:
        self._repository = repository
        self._service = repository.service
        self._metrics = metrics
        self._expected_auth: list[bytes] = []
        self.set_api_keys(api_keys)
        self._max_body = max_body_bytes
        self._scoring = scoring
        self.scoring_ready = scoring is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            await self._route(scope, path, method, receive, send)
        except HttpError as exc:
            self._metrics.http_errors += 1
            await _send(send, exc.status, codecs.dumps({"error": str(exc)}), _JSON + exc.headers)
        except AgentError as exc:
            await _send(send, status_for(exc), codecs.dumps({"error": str(exc)}), _JSON)
        except Exception as exc:  # a bug must cost one request, never the agent
            log.exception("unexpected error serving a request", extra={"path": path, "method": method})
            await _send(send, 500, codecs.dumps({"error": f"internal error: {exc!r}"}), _JSON)

    async def _route(self, scope: Scope, path: str, method: str, receive: Receive, send: Send) -> None:
        parts = path.split("/")
        # parts[0] is "" (the leading slash)
        if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models":
            headers = scope["headers"]
            self._authorize(headers)
            name = parts[3]
            rest = parts[4:]
            version: str | None = None
            if len(rest) >= 2 and rest[0] == "versions":
                version = rest[1]
                rest = rest[2:]
            if rest == ["infer"]:
                _require(method, "POST")
                await self._infer(headers, receive, send, name, version)
                return
            if rest in ([], [""]):
                _require(method, "GET")
                runtime = self._service.find(name, version)
                await _send(send, 200, self._model_metadata(name, runtime.version), _JSON)
                return
            if rest == ["ready"]:
                _require(method, "GET")
                self._service.find(name, version)  # 404 when not served; served means warmed
                await _send(send, 200, b"", _TEXT)
                return
            raise HttpError(404, f"no route for {path}")
        if path == "/v2/health/live":
            await _send(send, 200, b"", _TEXT)
            return
        if path == "/v2/health/ready":
            ready = self._repository.ready and self.scoring_ready
            await _send(send, 200 if ready else 503, b"", _TEXT)
            return
        if path == "/score":
            self._authorize(scope["headers"])
            _require(method, "POST")
            body = await self._body(scope["headers"], receive)
            if self._scoring is not None:
                answer = await self._scoring.score(body)
            else:
                answer = await self._service.score(body)
            await _send(send, 200, answer, _JSON)
            return
        if path in ("/v2", "/v2/"):
            self._authorize(scope["headers"])
            _require(method, "GET")
            await _send(send, 200, _SERVER_METADATA, _JSON)
            return
        if path == "/metrics":
            self._authorize(scope["headers"])
            _require(method, "GET")
            served = {(r.name, r.version) for r in self._repository.current.runtimes()}
            await _send(send, 200, self._metrics.render(served), _METRICS)
            return
        if path == "/":
            # Azure ML's liveness route, kept for clients and probes written against it.
            await _send(send, 200, b"Healthy", _TEXT)
            return
        raise HttpError(404, f"no route for {path}")

    async def _infer(
        self, headers: list[tuple[bytes, bytes]], receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        header_length: int | None = None
        for key, value in headers:
            if key == b"inference-header-content-length":
                try:
                    header_length = int(value)
                except ValueError:
                    raise HttpError(400, "Inference-Header-Content-Length must be an integer") from None
        body = await self._body(headers, receive)
        answer, answer_header_length = await self._service.infer(name, version, body, header_length)
        if answer_header_length is None:
            await _send(send, 200, answer, _JSON)
        else:
            extra = [
                (b"content-type", _OCTET),
                (b"inference-header-content-length", str(answer_header_length).encode()),
            ]
            await _send(send, 200, answer, extra)

    def set_api_keys(self, api_keys: tuple[str, ...]) -> None:
        """Replace the accepted keys (a desired state from the hub); empty turns auth off."""
        self._expected_auth = [f"Bearer {key}".encode() for key in api_keys]

    def _authorize(self, headers: list[tuple[bytes, bytes]]) -> None:
        if not self._expected_auth:
            return
        given = b""
        for key, value in headers:
            if key == b"authorization":
                given = value
                break
        ok = False
        for expected in self._expected_auth:
            # Compare against every key so timing tells nothing about which one nearly matched.
            ok |= hmac.compare_digest(given, expected)
        if not ok:
            raise HttpError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                [(b"www-authenticate", b"Bearer")],
            )

    async def _body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        for key, value in headers:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise HttpError(400, "Content-Length must be an integer") from None
                if declared > self._max_body:
                    raise HttpError(413, f"body of {declared} bytes is over the limit of {self._max_body}")
            elif key == b"content-encoding" and value not in (b"identity", b""):
                raise HttpError(415, f"Content-Encoding {value.decode('latin-1')!r} is not supported")
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client went away")
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise HttpError(413, f"body is over the limit of {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _model_metadata(self, name: str, version: str) -> bytes:
        served = self._repository.current
        runtime = served.find(name, version)
        s = runtime.session
        return codecs.dumps(
            {
                "name": name,
                "versions": sorted(served.versions[name]),
                "platform": "onnxruntime_onnx",
                "inputs": [spec.metadata() for spec in s.inputs],
                "outputs": [spec.metadata() for spec in s.outputs],
                "parameters": {
                    "version": s.version,
                    "providers": list(s.providers),
                    "missing_providers": list(s.missing_providers),
                    "sha256": s.sha256,
                    "dynamic_batching": runtime.batcher is not None,
                },
            }
        )


def _require(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(405, f"use {allowed} here, not {method}", [(b"allow", allowed.encode())])


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
