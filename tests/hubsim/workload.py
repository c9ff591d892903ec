"""A stand-in for the IoT Edge workload API over a unix socket (test code).

What ``IoTHubModuleClient.create_from_edge_environment()`` asks of it:

    GET  /trust-bundle?api-version=…                 -> {"certificate": "<PEM of the test CA>"}
    POST /modules/{m}/genid/{g}/sign?api-version=…   {"keyId": "primary", "algo": "HMACSHA256",
                                                      "data": b64} -> {"digest": b64 HMAC}

Signing uses the module's key from the shared :class:`TwinStore`, so the SAS token the SDK
builds passes the MQTT stand-in's check exactly as a real edge device's does with IoT Hub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import socketserver
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from tests.hubsim.twin_store import TwinStore


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class WorkloadAPI:
    def __init__(self, socket_path: Path, store: TwinStore, device_id: str, trust_bundle_pem: str) -> None:
        self.socket_path = socket_path
        self.store = store
        self.device_id = device_id
        self.trust_bundle = trust_bundle_pem
        self.generation_ids: dict[str, str] = {}  # module -> expected generation id (if set)
        self.requests: list[tuple[str, str]] = []
        socket_path.unlink(missing_ok=True)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                api.requests.append(("GET", path))
                if path == "/trust-bundle":
                    self._reply(200, {"certificate": api.trust_bundle})
                else:
                    self._reply(404, {"message": f"no route {path}"})

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                api.requests.append(("POST", path))
                parts = path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                if len(parts) != 5 or parts[0] != "modules" or parts[2] != "genid" or parts[4] != "sign":
                    self._reply(404, {"message": f"no route {path}"})
                    return
                module, generation = urllib.parse.unquote(parts[1]), parts[3]
                expected = api.generation_ids.get(module)
                if expected is not None and expected != generation:
                    self._reply(404, {"message": f"module {module} has no generation {generation}"})
                    return
                key = api.store.key_for(api.device_id, module)
                try:
                    request = json.loads(self.rfile.read(length))
                    data = base64.b64decode(request["data"])
                except (ValueError, KeyError):
                    self._reply(400, {"message": "expected {keyId, algo, data}"})
                    return
                if key is None or request.get("algo") != "HMACSHA256":
                    self._reply(404 if key is None else 400, {"message": "unknown module or algorithm"})
                    return
                digest = hmac.new(base64.b64decode(key), data, hashlib.sha256).digest()
                self._reply(200, {"digest": base64.b64encode(digest).decode()})

        self._server = _UnixHTTPServer(str(socket_path), Handler)
        os.chmod(socket_path, 0o666)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hubsim-workload", daemon=True
        )
        self._thread.start()

    @property
    def uri(self) -> str:
        """The value of ``IOTEDGE_WORKLOADURI``."""
        return f"unix://{self.socket_path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.socket_path.unlink(missing_ok=True)
