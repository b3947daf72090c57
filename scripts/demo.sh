#!/usr/bin/env bash
# Set up, create the demo project, ingest it, score the last 60 days up to today, run the daily
# job (playbooks acting over the last 30 days), and show the at-risk accounts, biggest ARR
# first, why the first one is at risk, and the most urgent tasks.
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
# Today plus the 60 days before it: trends and drivers of change have history to compare, and
# the playbooks a 30-day warm-up before the 30 days they act on.
"$ah" score --from "$(date -d '60 days ago' +%F)" --to "$(date +%F)"
# The daily job; on a first run --from says where acting starts. A second run adds nothing.
"$ah" run --from "$(date -d '30 days ago' +%F)"
"$ah" accounts --tier red --sort arr --limit 15
first=$("$ah" accounts --tier red --sort arr --limit 1 2>/dev/null | grep -oE 'A[0-9]{5}' | head -1 || true)
if [ -n "$first" ]; then
  "$ah" explain "$first"
fi
"$ah" tasks list --limit 10
