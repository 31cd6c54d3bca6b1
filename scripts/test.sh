#!/usr/bin/env bash
# Set everything up and run the whole test suite on SQLite, then on PostgreSQL, then
# the replica-router tests behind a hot standby of the PostgreSQL server.
#   bash scripts/test.sh            # all three runs
#   bash scripts/test.sh -k cursor  # extra arguments go to pytest (every run)
# ASM_TEST_DATABASES="sqlite" limits the runs (the default is "sqlite postgres replica").
# The replica run starts a streaming standby (scripts/replica.sh) and removes it after.
# Lint (ruff) and types (mypy --strict) run first; ASM_SKIP_LINT=1 leaves them out.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

ensure_venv openai-agents,langchain,adk,langgraph,otel test,lint
ensure_postgres
ensure_chromium
ensure_pgbouncer

status=0
if [ -z "${ASM_SKIP_LINT:-}" ]; then
    log "Lint and types: ruff check, ruff format --check, mypy --strict"
    "$VENV/bin/ruff" check . || status=$?
    "$VENV/bin/ruff" format --check . || status=$?
    "$VENV/bin/mypy" agent_sessions || status=$?
fi
for backend in ${ASM_TEST_DATABASES:-sqlite postgres replica}; do
    log "Test suite on $backend"
    start=$(date +%s)
    if [ "$backend" = replica ]; then
        # Removed however the run ends; a standby that cannot be made fails the run.
        trap replica_stop EXIT
        replica_start
    fi
    "$VENV/bin/python" -m pytest --ds="tests.settings_$backend" "$@" || status=$?
    if [ "$backend" = replica ]; then
        replica_stop
        trap - EXIT
    fi
    log "$backend run took $(( $(date +%s) - start )) s (exit $status)"
done
exit "$status"
