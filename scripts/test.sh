#!/usr/bin/env bash
# Set everything up and run the whole test suite on SQLite, then on PostgreSQL.
#   bash scripts/test.sh            # both databases
#   bash scripts/test.sh -k cursor  # extra arguments go to pytest (both runs)
# ASM_TEST_DATABASES="sqlite" limits the run to one backend (the default is both).
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

ensure_venv test,openai-agents,langchain,adk
ensure_postgres
ensure_chromium

status=0
for backend in ${ASM_TEST_DATABASES:-sqlite postgres}; do
    log "Test suite on $backend"
    start=$(date +%s)
    "$VENV/bin/python" -m pytest --ds="tests.settings_$backend" "$@" || status=$?
    log "$backend run took $(( $(date +%s) - start )) s (exit $status)"
done
exit "$status"
