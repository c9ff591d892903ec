"""Private Mosquitto brokers for tests: plain, TLS (a :class:`~tests.tls.TestCA`) and passwords.

    broker = start_mosquitto(tmp_path / "broker", tls=ca, users={"agent": "secret"})
    ... broker.url  (mqtt://127.0.0.1:PORT or mqtts://127.0.0.1:PORT)
    broker.stop(); broker.restart()   # same port and persistence: sessions and retained survive
    broker.close()                    # stop for good (fixtures call this)

Each broker runs in its own folder with its own config, on a free loopback port, with
persistence so that queued QoS 1 messages and retained messages survive a restart, and logs to
``mosquitto.log`` in that folder. It runs as root (``user root``) so its files need no chmod.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.tls import TestCA

MOSQUITTO = "mosquitto"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_listening(
    host: str, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen on {host}:{port} within {timeout}s")


@dataclass
class Broker:
    folder: Path
    host: str
    port: int
    tls: bool
    ca_file: Path | None
    config_file: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = self.folder / "mosquitto.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_file)], stdout=out, stderr=subprocess.STDOUT
            )
        _wait_listening(self.host, self.port, self._process, log, timeout)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file first)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    close = stop

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_mosquitto(
    folder: Path,
    tls: TestCA | None = None,
    users: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    client_certs: bool = False,
) -> Broker:
    """Start a broker in ``folder``; anonymous access unless ``users`` is given. With ``tls`` and
    ``client_certs``, every client must show a certificate of the test CA, whose CN is its user."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    lines = [
        "user root",
        f"listener {port} {host}",
        "persistence true",
        f"persistence_location {folder}/",
        "autosave_interval 1",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "max_queued_messages 100000",
        "max_inflight_messages 100",
    ]
    if users:
        password_file = folder / "passwords"
        password_file.write_text("")
        for user, password in users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(password_file), user, password],
                check=True,
                capture_output=True,
            )
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines.append("allow_anonymous true")
    ca_file = None
    if tls is not None:
        cert = tls.server_cert(f"mosquitto-{port}", [host, "localhost"])
        ca_file = tls.ca_file
        lines += [f"cafile {tls.ca_file}", f"certfile {cert.cert_file}", f"keyfile {cert.key_file}"]
        if client_certs:
            lines += ["require_certificate true", "use_identity_as_username true"]
    config_file = folder / "mosquitto.conf"
    config_file.write_text("\n".join(lines) + "\n")
    broker = Broker(folder, host, port, tls is not None, ca_file, config_file)
    broker.start()
    return broker


class TcpProxy:
    """A loopback TCP relay in front of a broker, to cut and restore the network for one client.

    ``cut()`` closes every relayed connection and refuses new ones (connections are accepted and
    closed at once, as a dead route looks to a client); ``restore()`` relays again. Unlike
    stopping the broker, the broker keeps running and never sees a half-processed shutdown.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        import threading

        self.target = (target_host, target_port)
        self._server = socket.create_server((host, 0))
        self.host = host
        self.port = int(self._server.getsockname()[1])
        self._up = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()
