#!/usr/bin/env bash
# Set up, create the demo project, ingest it, score it as of today and show at-risk accounts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
ah="$root/.venv/bin/accounthealth"
project="${1:-$root/mycompany}"
if [ ! -f "$project/accounthealth.yaml" ]; then
  "$ah" init "$project" --demo
fi
cd "$project"
"$ah" ingest
"$ah" score
"$ah" accounts --tier red --sort arr --limit 15
first=$("$ah" accounts --tier red --sort arr --limit 1 2>/dev/null | grep -oE 'A[0-9]{5}' | head -1 || true)
if [ -n "$first" ]; then
  "$ah" explain "$first"
fi
