#!/usr/bin/env bash
# Set up, create the demo project, ingest it, score the last 30 days up to today and show the
# at-risk accounts, biggest ARR first, and why the first one is at risk.
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
# Today plus the 30 days before it, so trends and drivers of change have history to compare.
"$ah" score --from "$(date -d '30 days ago' +%F)" --to "$(date +%F)"
"$ah" accounts --tier red --sort arr --limit 15
first=$("$ah" accounts --tier red --sort arr --limit 1 2>/dev/null | grep -oE 'A[0-9]{5}' | head -1 || true)
if [ -n "$first" ]; then
  "$ah" explain "$first"
fi
