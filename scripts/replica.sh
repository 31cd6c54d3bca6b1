#!/usr/bin/env bash
# A hot standby of the local PostgreSQL for the replica-router tests (issue #18).
#   bash scripts/replica.sh start    # pg_basebackup -R -X stream, started on a free loopback port
#   bash scripts/replica.sh status
#   bash scripts/replica.sh stop     # stops it and removes its data directory
# scripts/test.sh starts it before the replica run and stops it afterwards. The port
# is written to .test-state/replica.env, which tests/settings_replica.py reads.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

case "${1:-}" in
start) replica_start ;;
stop) replica_stop ;;
status) replica_status ;;
*) die "usage: $0 start|stop|status" ;;
esac
