#!/usr/bin/env bash
# The test command: sets up .venv if needed, then lint, the doctests and the test suite.
#   bash tools/test.sh [extra pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup_env.sh"
cd "$ROOT"
ruff check ser_lib recipes tools tests benchmarks
ruff format --check ser_lib recipes tools tests benchmarks
python -m pytest --doctest-modules ser_lib benchmarks tests -q "$@"
