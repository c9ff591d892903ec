#!/usr/bin/env bash
# Set up everything edge-toolkit needs on a fresh Debian/Ubuntu machine with Python 3.11:
# the Debian packages the tests and the demo use (Mosquitto, a Docker engine, an OCI registry,
# mmdebstrap for a registry-free base image, wrk for benchmarks) and a virtual environment in
# .venv with the project installed in editable mode. Safe to run again: it skips what is done.
#   --gpu-runtime  also .venv-ort-gpu: the device side with onnxruntime-gpu instead of onnxruntime,
#                  as the cuda/tensorrt images carry it (the tests check its CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
gpu_runtime=0
for arg in "$@"; do
    case $arg in
        --gpu-runtime) gpu_runtime=1 ;;
        *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
    esac
done

DEBIAN_PACKAGES=(mosquitto docker.io docker-registry mmdebstrap wrk ca-certificates)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages start system services we do not use; the tests run private instances.
if [[ $(id -u) -eq 0 ]]; then
    systemctl disable --now mosquitto docker docker-registry >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.edgekit-installed
if [[ ! -x .venv/bin/python ]]; then
    echo "bootstrap: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    echo "bootstrap: installing edge-toolkit[dev] into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e ".[dev]"
    touch "$stamp"
fi

gpu_stamp=.venv-ort-gpu/.edgekit-installed
if ((gpu_runtime)) && [[ ! -f $gpu_stamp || pyproject.toml -nt $gpu_stamp || module_templates/cuda/target.yaml -nt $gpu_stamp ]]; then
    echo "bootstrap: installing the device side with onnxruntime-gpu into .venv-ort-gpu"
    [[ -x .venv-ort-gpu/bin/python ]] || "$PYTHON" -m venv .venv-ort-gpu
    .venv-ort-gpu/bin/pip install -q --upgrade pip >/dev/null
    .venv-ort-gpu/bin/pip install -q -e ".[agent]"
    # Both wheels install the same `onnxruntime` package: remove the CPU one before the GPU one.
    .venv-ort-gpu/bin/pip uninstall -q -y onnxruntime
    # The same onnxruntime-gpu range as the cuda module image installs (module_templates/cuda).
    gpu_runtime_spec=$(.venv-ort-gpu/bin/python -c 'import yaml; print(yaml.safe_load(open("module_templates/cuda/target.yaml"))["runtime_package"])')
    # --force-reinstall: on a re-run the uninstall above also removed files of the GPU build.
    .venv-ort-gpu/bin/pip install -q --force-reinstall --no-deps "$gpu_runtime_spec"
    touch "$gpu_stamp"
fi
