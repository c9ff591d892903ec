"""Start the real `edge-agent run` as a subprocess on a free loopback port and wait until ready.

    with start_agent(["--model", str(path)]) as agent:
        requests.get(f"{agent.url}/v2/health/ready")

The agent is started with `--port 0`; the port it bound is read from its `listening` log line, so
there is no race for a free port. Its stderr (JSON log lines) is kept in `agent.logs()`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

READY_TIMEOUT_S = 30.0


class AgentStartError(RuntimeError):
    pass


class AgentProcess:
    def __init__(self, process: subprocess.Popen[bytes], host: str = "127.0.0.1") -> None:
        self.process = process
        self.host = host
        self.port = 0
        self._lines: list[str] = []
        self._port_seen = threading.Event()
        self._reader = threading.Thread(target=self._read, name="agent-log", daemon=True)
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines so far (non-JSON lines come back as {"raw": line})."""
        out = []
        for line in list(self._lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def log_text(self) -> str:
        return "\n".join(self._lines)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._lines.append(line)
            if not self._port_seen.is_set() and '"listening"' in line:
                try:
                    self.port = int(json.loads(line)["port"])
                    self._port_seen.set()
                except (ValueError, KeyError):
                    pass

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        if not self._port_seen.wait(timeout):
            raise AgentStartError(f"agent did not start listening:\n{self.log_text()}")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AgentStartError(f"agent exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError:
                pass
            except OSError:
                pass
            time.sleep(0.05)
        raise AgentStartError(f"agent not ready after {timeout}s:\n{self.log_text()}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful drain) without waiting."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, and SIGKILL if it does not stop in time; returns the exit code."""
        self.terminate()
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait(5)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def launch_agent(
    args: Sequence[str], env: Mapping[str, str] | None = None, python: str = sys.executable
) -> AgentProcess:
    """Start the agent without waiting for readiness (for start-up failure tests).

    ``python`` is the interpreter of the device environment to run it in (another virtual
    environment, e.g. one with the GPU build of ONNX Runtime)."""
    full_env = dict(os.environ)
    full_env.pop("EDGE_AGENT_PORT", None)
    if env:
        full_env.update(env)
    command = [python, "-m", "device_agent", "run", *args]
    if "--port" not in args and not full_env.get("EDGE_AGENT_PORT"):
        command += ["--port", "0"]
    if "--host" not in args:
        command += ["--host", "127.0.0.1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env)
    return AgentProcess(process)


def start_agent(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = READY_TIMEOUT_S,
    python: str = sys.executable,
) -> AgentProcess:
    """Start `edge-agent run ARGS` and return once /v2/health/ready answers 200."""
    agent = launch_agent(args, env, python)
    try:
        agent.wait_ready(timeout)
    except BaseException:
        agent.stop()
        raise
    return agent
