"""Serving benchmark: raw in-process ONNX Runtime vs an Azure-ML-style Flask/gunicorn app vs edge-agent.

    python benchmarks/serve.py                  # full run (~7 minutes on 2 cores)
    python benchmarks/serve.py --duration 2 --repeat 1 --concurrency 1 32   # quicker look

Models (made here, nothing downloaded): a tiny MLP 64->128->10 (one row per request) and a small CNN
on 1x3x224x224. Load comes from `wrk` (C, epoll) on loopback with a Lua script for the POST body,
one wrk thread, a fixed duration and at most --max-requests per test; a Python client on the same
two cores would cap near the servers it measures. Each server runs with one model loaded; memory
is the proportional set size (PSS) summed over the server's whole process tree after its load
tests, so shared pages count once.

The baseline is what an Azure ML scoring container does: Flask under gunicorn, 2 sync workers,
`json.loads` -> numpy -> `session.run` -> `tolist()`. The agent is measured on v2 JSON and v2
binary tensors. The raw loop uses the agent's default session options (the same thread settings);
the baseline uses ONNX Runtime's defaults, as an AML score.py would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import onnx_models  # noqa: E402

BASELINE_APP = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import onnxruntime as ort
    from flask import Flask, request, Response

    session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = Flask(__name__)

    @app.get("/")
    def live():
        return "Healthy"

    @app.post("/score")
    def score():
        data = json.loads(request.get_data())
        x = np.array(data["data"], dtype=np.float32)
        result = session.run(None, {input_name: x})
        return Response(json.dumps(result[0].tolist()), mimetype="application/json")
    """
)

LUA = textwrap.dedent(
    """
    local f = assert(io.open("{body}", "rb"))
    wrk.method = "POST"
    wrk.body = f:read("*a")
    f:close()
    {headers}
    -- Bounded in count as well as time: the thread stops after max_requests answers.
    local answered = 0
    function response(status, headers, body)
      answered = answered + 1
      if answered >= {max_requests} then wrk.thread:stop() end
    end
    function done(summary, latency, requests)
      io.write(string.format(
        'RESULT {{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}}\\n',
        summary.requests, summary.duration / 1e6,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status, latency:percentile(50), latency:percentile(99)))
    end
    """
)


@dataclass
class Case:
    model: str  # "mlp" | "cnn"
    payload: str  # "json" | "binary"
    server: str  # "raw" | "baseline" | "agent"
    concurrency: int
    throughput: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} never became ready")


def pss_kb(pid: int) -> int:
    """PSS of a process and all its descendants, from /proc/*/smaps_rollup."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_wrk(
    url: str,
    body: Path,
    headers: dict[str, str],
    concurrency: int,
    duration: float,
    max_requests: int = 2_000_000,
) -> dict[str, float]:
    header_lua = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = body.with_suffix(".lua")
    script.write_text(LUA.format(body=body, headers=header_lua, max_requests=max_requests))
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    output = done.stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[len("RESULT ") :])
    if result["errors"] or result["non2xx"]:
        raise RuntimeError(f"wrk saw errors against {url}: {result}\n{output}")
    if result["requests"] >= max_requests:
        # wrk still reports the full duration after the stop, so the rate would be wrong.
        raise RuntimeError(f"the load test hit --max-requests {max_requests}: lower --duration or raise it")
    return result


def raw_loop(model: Path, feeds: dict[str, np.ndarray], duration: float) -> float:
    import onnxruntime as ort

    from device_agent.config import SessionConfig
    from device_agent.engine import session_options

    # The same session options as the agent's defaults, so the ratio is serving overhead only.
    options = session_options(SessionConfig())
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(20):
        session.run(None, feeds)
    calls, started = 0, time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        for _ in range(10):
            session.run(None, feeds)
        calls += 10
    return calls / (time.perf_counter() - started)


def payloads(model: str, x: np.ndarray, folder: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    name = "input" if model == "mlp" else "image"
    v2_json = {
        "inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]
    }
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [
                {"name": "output" if model == "mlp" else "logits", "parameters": {"binary_data": True}}
            ],
        }
    ).encode()
    files = {
        "json": (json.dumps(v2_json).encode(), {"Content-Type": "application/json"}),
        "binary": (
            header + x.tobytes(),
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        ),
        "aml": (json.dumps({"data": x.tolist()}).encode(), {"Content-Type": "application/json"}),
    }
    out = {}
    for kind, (data, headers) in files.items():
        path = folder / f"{model}-{kind}.body"
        path.write_bytes(data)
        out[kind] = (path, headers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=4, help="seconds per load test")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--max-requests", type=int, default=2_000_000, help="requests per load test at most (and --duration)"
    )
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument(
        "--cnn-channels",
        type=int,
        default=256,
        help="width of small_cnn(); 256 (the default) gives ~50 rows/s raw on 2 cores, the 'small CNN' "
        "the serving targets were set against; 8 is the stock test model (~0.15 ms a row)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    folder = Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    rng = np.random.default_rng(0)
    inputs = {
        "mlp": rng.standard_normal((1, 64)).astype(np.float32),
        "cnn": rng.standard_normal((1, 3, 224, 224)).astype(np.float32),
    }
    files = {
        "mlp": onnx_models.save(onnx_models.mlp(), folder / "mlp.onnx"),
        "cnn": onnx_models.save(onnx_models.small_cnn(channels=args.cnn_channels), folder / "cnn.onnx"),
    }
    cases: list[Case] = []
    extras: dict[str, dict[str, float]] = {}
    try:
        for model in args.models:
            bodies = payloads(model, inputs[model], folder)
            feed_name = "input" if model == "mlp" else "image"
            model_cases = [Case(model, "-", "raw", 0)]
            for c in args.concurrency:
                model_cases.append(Case(model, "json", "baseline", c))
                model_cases.append(Case(model, "json", "agent", c))
                model_cases.append(Case(model, "binary", "agent", c))
            for rep in range(args.repeat):
                print(f"[{model}] repetition {rep + 1}/{args.repeat}", file=sys.stderr)
                model_cases[0].throughput.append(
                    raw_loop(files[model], {feed_name: inputs[model]}, args.duration)
                )
                for server in ("baseline", "agent"):
                    process, url, ready_s = start_server(server, files[model], folder)
                    try:
                        extras.setdefault(f"{model}/{server}", {})["start_to_ready_s"] = ready_s
                        for case in model_cases:
                            if case.server != server:
                                continue
                            if server == "baseline":
                                body, headers = bodies["aml"]
                                target = f"{url}/score"
                            else:
                                body, headers = bodies[case.payload]
                                target = f"{url}/v2/models/{model}/infer"
                            result = run_wrk(
                                target, body, headers, case.concurrency, args.duration, args.max_requests
                            )
                            case.throughput.append(result["requests"] / result["seconds"])
                            case.p50_ms.append(result["p50_us"] / 1000)
                            case.p99_ms.append(result["p99_us"] / 1000)
                        extras[f"{model}/{server}"]["pss_mb"] = pss_kb(process.pid) / 1024
                    finally:
                        stop(process)
            cases.extend(model_cases)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(cases, extras)
    if args.json:
        args.json.write_text(
            json.dumps({"cases": [vars(c) for c in cases], "servers": extras}, indent=2), encoding="utf-8"
        )


def start_server(server: str, model: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = dict(os.environ)
    if server == "baseline":
        (folder / "baseline_app.py").write_text(BASELINE_APP)
        env["BENCH_MODEL"] = str(model)
        command = [
            sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
            "--chdir", str(folder), "--log-level", "warning", "baseline_app:app",
        ]  # fmt: skip
        ready_path = "/"
    else:
        name = model.stem
        command = [
            sys.executable, "-m", "device_agent", "run", "--model", str(model), "--name", name,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        ready_path = "/v2/health/ready"
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + ready_path)
    return process, url, time.perf_counter() - started


def report(cases: list[Case], extras: dict[str, dict[str, float]]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    index = {(c.model, c.payload, c.server, c.concurrency): c for c in cases}
    print()
    print(f"{'model':5} {'payload':7} {'server':9} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'x raw':>6} {'x base':>7}")  # fmt: skip
    for c in cases:
        raw = index[(c.model, "-", "raw", 0)]
        base = index.get((c.model, "json", "baseline", c.concurrency))
        ratio_raw = med(c.throughput) / med(raw.throughput)
        ratio_base = (
            med(c.throughput) / med(base.throughput) if base and c.server == "agent" else float("nan")
        )
        conc = str(c.concurrency) if c.concurrency else "-"
        print(
            f"{c.model:5} {c.payload:7} {c.server:9} {conc:>4} {med(c.throughput):9.1f} "
            f"{med(c.p50_ms):8.3f} {med(c.p99_ms):8.3f} {ratio_raw:6.2f} {ratio_base:7.2f}"
        )
    print()
    for key, values in sorted(extras.items()):
        print(
            f"{key:14} start-to-ready {values['start_to_ready_s']:.2f} s, "
            f"PSS after load {values['pss_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
