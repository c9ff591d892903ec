"""The IoT Hub *service* API of the local hub stand-in: HTTPS in a thread, over a TwinStore.

Test code. It serves exactly the requests the unpatched azure-iot-hub SDK makes for what
edge-toolkit uses (api-version 2021-04-12), and checks the SDK's SAS token like a hub would:

    POST   /devices/{d}/applyConfigurationContent     {"modulesContent": …}          → 204
    PUT    /configurations/{id}   (If-Match optional)  Configuration                  → 200 / 409
    GET    /configurations/{id} | /configurations      Configuration(s)               → 200 / 404
    DELETE /configurations/{id}                                                       → 204
    GET    /twins/{d}[/modules/{m}]                    twin                           → 200 / 404
    PATCH  /twins/{d}[/modules/{m}]                    {"tags", "properties": {"desired"}} → 200
    POST   /twins/{d}[/modules/{m}]/methods            {"methodName", "payload", …}   → 200
    POST   /devices/query                              {"query"}  (+ x-ms-item-type / x-ms-continuation)

A configuration is applied at once to every edge device its target condition matches (real hubs
do this within minutes); conditions support `*`, `deviceId='x'` and `tags.a.b='v'` joined by AND.
Layered configurations patch the property paths they name on top.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.hubsim.twin_store import TwinStore, merge_patch
from tests.tls import ServerCert, TestCA

POLICY = "iothubowner"
_CONDITION = re.compile(r"^\s*(deviceId|tags(?:\.[A-Za-z0-9_]+)+)\s*=\s*'([^']*)'\s*$")


class ServiceAPI:
    """Start with `start()`; `connection_string` is what `edgekit deploy` is given."""

    def __init__(
        self, store: TwinStore, ca: TestCA, host: str = "127.0.0.1", cert: ServerCert | None = None
    ) -> None:
        self.store = store
        self.host = host
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        # Pass `cert` to reuse one across tests: making an RSA key costs ~0.3 s.
        cert = cert or ca.server_cert(f"hub-service-{secrets.token_hex(4)}", [host, "localhost"])
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self._server = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def hostname(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        return f"HostName={self.hostname};SharedAccessKeyName={POLICY};SharedAccessKey={self.key}"

    def start(self) -> ServiceAPI:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hubsim-service",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ServiceAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # auth -----------------------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        """A service SAS token: sr = url-encoded hostname, HMAC-SHA256 with the policy key, not expired."""
        if not header or not header.startswith("SharedAccessSignature "):
            return False
        fields = dict(
            part.split("=", 1) for part in header[len("SharedAccessSignature ") :].split("&") if "=" in part
        )
        if fields.get("skn") != POLICY or not fields.get("se", "").isdigit():
            return False
        if int(fields["se"]) < time.time():
            return False
        if urllib.parse.unquote_plus(fields.get("sr", "")).lower() != self.hostname.lower():
            return False
        message = f"{fields['sr']}\n{fields['se']}".encode()
        expected = base64.b64encode(hmac.new(base64.b64decode(self.key), message, hashlib.sha256).digest())
        return hmac.compare_digest(urllib.parse.unquote(fields.get("sig", "")).encode(), expected)

    # configurations -------------------------------------------------------------------------------
    def put_configuration(
        self, config_id: str, body: dict[str, Any], if_match: str | None
    ) -> tuple[int, Any]:
        with self.store._lock:
            existing = self.store.configurations.get(config_id)
            if existing is not None and if_match is None:
                return 409, {"Message": f"ErrorCode:ConfigurationAlreadyExists;{config_id} exists"}
            if existing is not None and if_match not in ("*", existing["etag"]):
                return 412, {"Message": "ErrorCode:PreconditionFailed;etag mismatch"}
            now = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
            stored = {
                **body,
                "id": config_id,
                "etag": base64.b64encode(secrets.token_bytes(6)).decode(),
                "createdTimeUtc": existing["createdTimeUtc"] if existing else now,
                "lastUpdatedTimeUtc": now,
                "systemMetrics": {"results": {}, "queries": {}},
                "metrics": body.get("metrics") or {"results": {}, "queries": {}},
            }
            self.store.configurations[config_id] = stored
        applied = self._apply_configuration(stored)
        stored["systemMetrics"]["results"] = {"targetedCount": applied, "appliedCount": applied}
        return 200, stored

    def _apply_configuration(self, config: dict[str, Any]) -> int:
        content = (config.get("content") or {}).get("modulesContent") or {}
        applied = 0
        for device_id, device in list(self.store.devices.items()):
            if device.edge_enabled and self.matches(config.get("targetCondition") or "", device_id):
                self.apply_content(device_id, content)
                applied += 1
        return applied

    def matches(self, condition: str, device_id: str) -> bool:
        if condition.strip() == "*":
            return True
        tags = self.store.twin(device_id).tags
        for clause in re.split(r"\s+AND\s+", condition, flags=re.IGNORECASE):
            match = _CONDITION.match(clause)
            if match is None:
                return False
            field, wanted = match.groups()
            if field == "deviceId":
                value: Any = device_id
            else:
                value = tags
                for part in field.split(".")[1:]:
                    value = value.get(part) if isinstance(value, dict) else None
            if value != wanted:
                return False
        return True

    def apply_content(self, device_id: str, modules_content: dict[str, Any]) -> None:
        for module_id, section in modules_content.items():
            for key, value in section.items():
                if key == "properties.desired":
                    self.store.replace_desired(device_id, module_id, value)
                elif key.startswith("properties.desired."):
                    # Layered: set one property path, keep the rest.
                    patch: dict[str, Any] = {}
                    node = patch
                    parts = key.split(".")[2:]
                    for part in parts[:-1]:
                        node = node.setdefault(part, {})
                    node[parts[-1]] = value
                    if (device_id, module_id) not in self.store.twins:
                        self.store.replace_desired(device_id, module_id, {})
                    self.store.patch_desired(device_id, module_id, patch)

    def query(self, text: str) -> list[dict[str, Any]]:
        match = re.match(r"^\s*SELECT\s+\*\s+FROM\s+devices(?:\s+WHERE\s+(.+))?\s*$", text, re.IGNORECASE)
        if match is None:
            raise ValueError(f"unsupported query {text!r}")
        condition = match.group(1) or "*"
        return [
            self.store.twin(d).document(d, None)
            for d in sorted(self.store.devices)
            if self.matches(condition, d)
        ]


def _make_handler(api: ServiceAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read api.requests
            pass

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
            api.requests.append((method, url.path))
            body = self._body()
            if not api.authorized(self.headers.get("Authorization")):
                self._send(401, {"Message": "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"})
                return
            if "api-version=" not in url.query:
                self._send(400, {"Message": "api-version is required"})
                return
            try:
                status, payload, headers = self._route(method, parts, body)
            except KeyError as exc:
                status, payload, headers = 404, {"Message": f"ErrorCode:DeviceNotFound;{exc}"}, {}
            self._send(status, payload, headers)

        def _route(self, method: str, parts: list[str], body: Any) -> tuple[int, Any, dict[str, str]]:
            store = api.store
            match method, parts:
                case "POST", ["devices", device_id, "applyConfigurationContent"]:
                    if device_id not in store.devices:
                        raise KeyError(device_id)
                    if not store.devices[device_id].edge_enabled:
                        return (
                            400,
                            {"Message": f"ErrorCode:ArgumentInvalid;{device_id} is not an edge device"},
                            {},
                        )
                    api.apply_content(device_id, (body or {}).get("modulesContent") or {})
                    return 204, None, {}
                case "PUT", ["configurations", config_id]:
                    status, payload = api.put_configuration(
                        config_id, body or {}, self.headers.get("If-Match")
                    )
                    return status, payload, {}
                case "GET", ["configurations", config_id]:
                    return 200, store.configurations[config_id], {}
                case "GET", ["configurations"]:
                    return 200, list(store.configurations.values()), {}
                case "DELETE", ["configurations", config_id]:
                    store.configurations.pop(config_id)
                    return 204, None, {}
                case "GET", ["twins", device_id]:
                    return 200, store.twin(device_id).document(device_id, None), {}
                case "GET", ["twins", device_id, "modules", module_id]:
                    return 200, store.twin(device_id, module_id).document(device_id, module_id), {}
                case "PATCH", ["twins", device_id, *rest] if rest in ([], ["modules", rest[-1]]):
                    module_id = rest[-1] if rest else None
                    twin = store.twin(device_id, module_id)
                    if body.get("tags"):
                        with store._lock:
                            merge_patch(twin.tags, body["tags"])
                    desired = (body.get("properties") or {}).get("desired")
                    if desired:
                        store.patch_desired(device_id, module_id, desired)
                    return 200, twin.document(device_id, module_id), {}
                case "POST", ["twins", device_id, "methods"] | ["twins", device_id, "modules", _, "methods"]:
                    module_id = parts[3] if len(parts) == 5 else None
                    status, payload = store.invoke_method(
                        device_id,
                        module_id,
                        body["methodName"],
                        body.get("payload"),
                        float(body.get("responseTimeoutInSeconds") or 30),
                    )
                    return 200, {"status": status, "payload": payload}, {}
                case "POST", ["devices", "query"]:
                    try:
                        items = api.query((body or {}).get("query", ""))
                    except ValueError as exc:
                        return 400, {"Message": str(exc)}, {}
                    return 200, items, {"x-ms-item-type": "Twin", "x-ms-continuation": ""}
            return 404, {"Message": f"no such endpoint {method} /{'/'.join(parts)}"}, {}

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


def ca_bundle(ca: TestCA) -> Path:
    """What REQUESTS_CA_BUNDLE should point at for the SDK to trust the stand-in."""
    return ca.ca_file
