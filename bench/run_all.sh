#!/usr/bin/env bash
# Run every benchmark at the sizes the issues name, one after another, on the
# local PostgreSQL (and SQLite for bench_store --sqlite and bench_search --sqlite);
# each prints its numbers next to the hand-written baseline and the ratio.
# Output is also kept under bench/results/ (git-ignored).
#   bash bench/run_all.sh            # full size (about 30 minutes on 2 cores)
#   ASM_BENCH_SMOKE=1 bash bench/run_all.sh   # small sizes, a minute or two
#   ASM_BENCH_10M=1 bash bench/run_all.sh     # also bench_query, bench_admin, bench_search at 10M
#                                             # events (the first run generates them:
#                                             # about an hour; later runs reuse them)
set -euo pipefail
source "$(dirname "$0")/../scripts/_setup.sh"
cd "$ROOT"
ensure_venv "test,openai-agents,langchain,adk,langgraph,otel,bench"
ensure_postgres

mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
if [ -n "${ASM_BENCH_SMOKE:-}" ]; then
    runs=(
        "bench_store --single 200 --batches 2 --replay 3000"
        "bench_store --sqlite --single 200 --batches 2 --replay 3000"
        "bench_query --scale 0.05"
        "bench_maintenance --scale 0.05"
        "bench_maintenance --dataset total --events 30000,90000"
        "bench_restore --scale 0.05"
        "bench_admin"
        "bench_integrations"
        "bench_pipeline --single 200 --batches 1 --repeat 1"
        "bench_stream --streams 100 --sessions 10 --idle-seconds 2"
        "bench_search --events 20000 --repeat 5 --rounds 1"
        "bench_search --events 20000 --repeat 5 --rounds 1 --sqlite"
    )
else
    runs=(
        "bench_store"
        "bench_store --sqlite"
        "bench_query --scale 1"
        "bench_maintenance --scale 1 --batch-size 100"
        "bench_maintenance --dataset total"
        "bench_maintenance --scale 1 --batch-size 1000"
        "bench_restore --scale 1 --batch-size 1000"
        "bench_admin --scale 1"
        "bench_integrations --items 2000 --read-items 10000"
        "bench_pipeline --single 1000 --batches 5 --repeat 3"
        "bench_stream --streams 1000 --sessions 100"
        "bench_search --events 1000000 --repeat 20"
        "bench_search --events 1000000 --repeat 20 --sqlite"
    )
    if [ -n "${ASM_BENCH_10M:-}" ]; then
        runs+=(
            "bench_query --scale 10 --db asm_bench_query10"
            "bench_admin --scale 10"
            "bench_search --events 10000000 --db asm_bench_search10 --repeat 10"
        )
    fi
fi
for run in "${runs[@]}"; do
    name="${run%% *}"
    log "bench.$run"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m bench.$run 2>&1 | tee "bench/results/$stamp-$name.txt"
done
log "Results in bench/results/$stamp-*.txt"
