#!/usr/bin/env bash
# Set everything up and run the whole test suite on SQLite, then on PostgreSQL, then
# the replica-router tests behind a hot standby of the PostgreSQL server.
#   bash scripts/test.sh            # all three runs
#   bash scripts/test.sh -k cursor  # extra arguments go to pytest (every run)
# ASM_TEST_DATABASES="sqlite" limits the runs (the default is "sqlite postgres replica").
# The replica run starts a streaming standby (scripts/replica.sh) and removes it after.
# Lint (ruff) and types (mypy --strict) run first; ASM_SKIP_LINT=1 leaves them out.
# The SQLite run is measured by coverage.py ([tool.coverage] in pyproject.toml); the
# total is printed at the end (no threshold). ASM_SKIP_COVERAGE=1 runs it unmeasured.
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
    if [ "$backend" = sqlite ] && [ -z "${ASM_SKIP_COVERAGE:-}" ]; then
        "$VENV/bin/python" -m coverage erase
        "$VENV/bin/python" -m coverage run -m pytest --ds="tests.settings_$backend" "$@" || status=$?
        "$VENV/bin/python" -m coverage combine --quiet || true
        coverage_total=$("$VENV/bin/python" -m coverage report --format=total 2>/dev/null || echo "?")
    else
        "$VENV/bin/python" -m pytest --ds="tests.settings_$backend" "$@" || status=$?
    fi
    if [ "$backend" = replica ]; then
        replica_stop
        trap - EXIT
    fi
    log "$backend run took $(( $(date +%s) - start )) s (exit $status)"
done
if [ -n "${coverage_total:-}" ]; then
    log "Coverage of agent_sessions on the SQLite run: ${coverage_total}% (coverage report for details)"
fi
exit "$status"
