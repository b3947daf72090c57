#!/usr/bin/env bash
# Set up with the test tools, lint, and run the tests (extra arguments go to pytest).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/system-deps.sh"
EXTRAS=test bash "$root/scripts/setup.sh"
cd "$root"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when a selection (-k, a path) matched no test: that is not a failure of the
# code, but say so loudly. A full run that collects nothing is a failure.
if [ "$rc" -eq 5 ] && [ "$#" -gt 0 ]; then
  echo "No test matched the selection: $*"
  exit 0
fi
exit "$rc"
