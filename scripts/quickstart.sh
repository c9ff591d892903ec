#!/usr/bin/env bash
# The main job end to end on the embedded defaults, on a fresh Debian/Ubuntu machine:
# set up, create a workspace, make a sample model, register it and show it.
# Everything happens in ./demo (the workspace is ./demo/.edgekit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p demo && cd demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "workspace"
edgekit init

step "register a model"
edgekit model sample mlp.onnx
edgekit model register mlp.onnx --name mlp --tag stage=demo --description "quickstart sample"
edgekit model list
edgekit model show mlp
