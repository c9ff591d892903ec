#!/usr/bin/env bash
# The main job end to end on the embedded defaults, on a fresh Debian/Ubuntu machine:
#   workspace -> register a sample model -> package it as an IoT Edge module -> deployment manifest
#   -> serve it with edge-agent, infer over HTTP, health reports to a local MQTT broker (or the
#   console) -> deploy new settings over MQTT -> fleet table -> build the module image, run it and
#   infer against the container (where a Docker engine runs or can be started).
# Everything happens in ./demo (the workspace is ./demo/.edgekit); run it again at will.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/bootstrap.sh
export PATH="$repo/.venv/bin:$PATH"
# Tables take the terminal's width; into a log or a pipe, give them room instead of rich's 80.
[[ -t 1 ]] || export COLUMNS=${COLUMNS:-150}
mkdir -p demo && cd demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {  # URL SECONDS
    python - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + limit
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"not ready within {limit:.0f} s: {url}")
    time.sleep(0.2)
PY
}
infer() {  # BASE_URL: one v2 JSON request, checked against ONNX Runtime in this process
    python - "$1" <<'PY'
import json, sys, urllib.request
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("mlp.onnx", providers=["CPUExecutionProvider"])
x = np.random.default_rng(7).standard_normal((2, 64), dtype=np.float32)
name = session.get_inputs()[0].name
body = {"id": "quickstart-1", "inputs": [{"name": name, "datatype": "FP32", "shape": [2, 64], "data": x.ravel().tolist()}]}
request = urllib.request.Request(f"{sys.argv[1]}/v2/models/mlp/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as r:
    reply = json.load(r)
out = reply["outputs"][0]
got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
want = session.run(None, {name: x})[0]
diff = float(np.abs(got - want).max())
print(f"   POST /v2/models/mlp/infer -> {out['name']} {out['shape']} {out['datatype']}; max |diff| vs in-process ONNX Runtime: {diff:.2e}")
sys.exit(0 if diff < 1e-4 else "the served result differs from ONNX Runtime")
PY
}

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${container:-} ]]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
    if [[ -n ${own_engine:-} ]]; then bash "$repo/scripts/docker-engine.sh" stop "$PWD/.engine"; fi
}
trap cleanup EXIT

step "workspace"
edgekit init

step "register a model"
edgekit model sample mlp.onnx
edgekit model register mlp.onnx --name mlp --tag stage=demo --description "quickstart sample"
edgekit model list
edgekit model show mlp

step "package it as an IoT Edge module (cpu, amd64)"
edgekit package mlp --module-name edgeinference -o modules/edgeinference
note "module.json, Dockerfile.amd64, agent.yaml and the model with its sha256 are in modules/edgeinference"

step "deployment manifest from deployment.template.json"
cp "$repo/deployment.template.json" .
if [[ ! -f .env ]]; then
    printf 'CONTAINER_REGISTRY_ADDRESS=localhost:5000\nCONTAINER_REGISTRY_USERNAME=demo\nCONTAINER_REGISTRY_PASSWORD=demo-secret\n' > .env
fi
edgekit manifest gen deployment.template.json --platform amd64 -o config/deployment.amd64.json
edgekit manifest validate config/deployment.amd64.json

step "serve it with edge-agent and report health"
agent_port=$(free_port)
if command -v mosquitto >/dev/null; then
    broker_port=$(free_port)
    mkdir -p broker
    printf 'user root\nlistener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' \
        "$broker_port" > broker/mosquitto.conf
    mosquitto -c broker/mosquitto.conf 2>broker/mosquitto.log &
    pids+=($!)
    broker="mqtt://127.0.0.1:$broker_port"
    note "a private Mosquitto on $broker; the agent reports to it as device demo-device"
    edge-agent run --model mlp.onnx --name mlp --port "$agent_port" --host 127.0.0.1 --data-dir agent-data \
        --mqtt "$broker" --device-id demo-device --health-interval 2 --log-format text 2>agent.log &
    pids+=($!)
else
    broker=""
    note "no Mosquitto here: health reports go to the console (agent.out)"
    edge-agent run --model mlp.onnx --name mlp --port "$agent_port" --host 127.0.0.1 --data-dir agent-data \
        --health-interval 2 --log-format text >agent.out 2>agent.log &
    pids+=($!)
fi
wait_ready "http://127.0.0.1:$agent_port/v2/health/ready" 60
note "edge-agent ready on http://127.0.0.1:$agent_port (log: demo/agent.log)"
infer "http://127.0.0.1:$agent_port"

if [[ -n $broker ]]; then
    step "deploy new settings to the device over MQTT (retained desired state)"
    edgekit deploy config/deployment.amd64.json --mqtt "$broker" --device demo-device --module edgeinference
    step "fleet health from the MQTT health stream"
    edgekit monitor --mqtt "$broker" --once --duration 5
else
    sleep 5
    step "health reports (console)"
    head -n 1 agent.out | cut -c1-400
fi

step "build the module image and run it"
if docker version >/dev/null 2>&1; then
    note "using the Docker engine at ${DOCKER_HOST:-the default socket}"
elif [[ $(id -u) -eq 0 ]] && command -v dockerd >/dev/null; then
    DOCKER_HOST=$(bash "$repo/scripts/docker-engine.sh" start "$PWD/.engine")
    export DOCKER_HOST
    own_engine=1
    note "started a private Docker engine at $DOCKER_HOST"
else
    note "SKIPPED: no Docker engine is reachable (set DOCKER_HOST, or run as root with docker.io installed)"
    note "to do it yourself: edgekit build modules/edgeinference --offline --base-image debian-local"
    exit 0
fi
# debian-local: a Debian base made here with mmdebstrap (cached), so no image registry is needed;
# --offline: the device-side wheels are downloaded first and installed with --no-index.
edgekit build modules/edgeinference --platform amd64 --offline --base-image debian-local \
    --log-file modules/edgeinference/build.log
edgekit images
image=$(edgekit images edgeinference --json | python -c 'import json, sys; print(json.load(sys.stdin)[0]["image_id"])')  # newest first
container_port=$(free_port)
container=$(docker run -d --network host --pull never -e EDGE_AGENT_PORT="$container_port" "$image")
wait_ready "http://127.0.0.1:$container_port/v2/health/ready" 120
note "module container ${container:0:12} ready on port $container_port"
infer "http://127.0.0.1:$container_port"
printf '\n\033[1mquickstart finished\033[0m: see demo/ (workspace .edgekit, modules/, config/)\n'
