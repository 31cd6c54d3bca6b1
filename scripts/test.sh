#!/usr/bin/env bash
# Set everything up and run the whole test suite on SQLite, then on PostgreSQL.
#   bash scripts/test.sh            # both databases
#   bash scripts/test.sh -k cursor  # extra arguments go to pytest (both runs)
# ASM_TEST_DATABASES="sqlite" limits the run to one backend (the default is both).
# Lint (ruff) and types (mypy --strict) run first; ASM_SKIP_LINT=1 leaves them out.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

ensure_venv openai-agents,langchain,adk test,lint
ensure_postgres
ensure_chromium

status=0
if [ -z "${ASM_SKIP_LINT:-}" ]; then
    log "Lint and types: ruff check, ruff format --check, mypy --strict"
    "$VENV/bin/ruff" check . || status=$?
    "$VENV/bin/ruff" format --check . || status=$?
    "$VENV/bin/mypy" agent_sessions || status=$?
fi
for backend in ${ASM_TEST_DATABASES:-sqlite postgres}; do
    log "Test suite on $backend"
    start=$(date +%s)
    "$VENV/bin/python" -m pytest --ds="tests.settings_$backend" "$@" || status=$?
    log "$backend run took $(( $(date +%s) - start )) s (exit $status)"
done
exit "$status"
