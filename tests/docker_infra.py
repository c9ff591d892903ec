"""A private Docker engine and image registry for tests, started and stopped by PID.

``dockerd`` runs as root with its own socket, data root, exec root and pid file, no iptables
and no bridge (DESIGN.md §5): containers use host networking. overlay2 is tried first (fast);
vfs is the fallback that works everywhere. The registry is Debian's ``docker-registry`` with
filesystem storage on a free loopback port (loopback registries need no TLS).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DockerDaemon:
    host: str  # unix:///…/docker.sock
    driver: str
    root: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")


def _ping(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        try:
            s.connect(str(socket_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(200)
        except OSError:
            return False


def _start_dockerd(root: Path, driver: str, timeout_s: float = 60.0) -> DockerDaemon | None:
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "docker.sock"
    command = [
        shutil.which("dockerd") or "dockerd",
        f"--storage-driver={driver}",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--host",
        f"unix://{sock}",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "dockerd.pid"),
    ]
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None  # this driver does not work here
        if _ping(sock):
            return DockerDaemon(host=f"unix://{sock}", driver=driver, root=root, process=process)
        time.sleep(0.2)
    _stop(process)
    return None


def _works(daemon: DockerDaemon) -> bool:
    """overlay2 may start and still fail at the first mount (nested overlay): try one."""
    env = {**os.environ, "DOCKER_HOST": daemon.host}
    probe = daemon.root / "probe.tar"
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("probe")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    probe.write_bytes(buffer.getvalue())
    result = subprocess.run(
        ["docker", "import", str(probe), "edgekit-probe:1"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return False
    created = subprocess.run(
        ["docker", "create", "--network", "none", "edgekit-probe:1", "/probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ok = created.returncode == 0
    if ok:
        # Mounting the container's rootfs is where a broken overlay shows itself.
        copied = subprocess.run(
            ["docker", "cp", f"{created.stdout.strip()}:/probe", str(daemon.root / "probe.out")],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        ok = copied.returncode == 0
        subprocess.run(
            ["docker", "rm", "-f", created.stdout.strip()], env=env, capture_output=True, check=False
        )
    subprocess.run(["docker", "rmi", "-f", "edgekit-probe:1"], env=env, capture_output=True, check=False)
    return ok


@contextlib.contextmanager
def docker_daemon(root: Path) -> Iterator[DockerDaemon]:
    """A private dockerd for the block; overlay2 when it works here, else vfs."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed: apt-get install docker.io (scripts/bootstrap.sh does)")
    daemon = None
    for driver in ("overlay2", "vfs"):
        attempt_root = root / driver
        daemon = _start_dockerd(attempt_root, driver)
        if daemon is not None and _works(daemon):
            break
        if daemon is not None:
            _stop(daemon.process)
            daemon = None
        shutil.rmtree(attempt_root, ignore_errors=True)
    if daemon is None:
        raise RuntimeError(f"dockerd did not start with overlay2 or vfs; see {root}")
    try:
        yield daemon
    finally:
        _stop(daemon.process)
        _unmount_below(root)
        # vfs layers are full copies: free the disk now, not at the end of the test session.
        shutil.rmtree(root, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    """dockerd leaves its network namespace (exec/netns/default) mounted after it exits."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    root: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def image_registry(root: Path) -> Iterator[Registry]:
    """Debian's docker-registry on a free loopback port, storing in ``root``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed: apt-get install docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not answer on /v2/ within 30 s")
            time.sleep(0.1)
        yield Registry(address=address, root=root, process=process)
    finally:
        _stop(process)
