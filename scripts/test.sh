#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, then every test tier.
# A skipped test fails the run (see tests/conftest.py): CI must exercise everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --gpu-runtime
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check edge_toolkit device_agent module_templates tests benchmarks
echo "== ruff format"; ruff format --check edge_toolkit device_agent module_templates tests benchmarks
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
