# Shared set-up steps for scripts/test.sh and scripts/demo.sh (sourced, not run).
# Creates .venv with the project installed, and starts the local PostgreSQL.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ASM_VENV:-$ROOT/.venv}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

pick_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)."
}

# ensure_venv EXTRAS [GROUPS]: create .venv if needed and install the project with
# those extras, plus the PEP 735 dependency groups GROUPS (comma list) of pyproject.toml.
ensure_venv() {
    local extras="$1" groups="${2:-}"
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(pick_python)"
        log "Creating $VENV with $python"
        "$python" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$extras-$groups"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        log "Installing django-agent-sessions[$extras] ${groups:+(groups: $groups) }into $VENV"
        local group_args=()
        local group
        for group in ${groups//,/ }; do group_args+=(--group "$ROOT/pyproject.toml:$group"); done
        # pip >= 25.1 installs PEP 735 dependency groups (--group).
        "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=25.1"
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]" "${group_args[@]}"
        touch "$stamp"
    fi
}

pg_up() { pg_isready -q -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" 2>/dev/null; }

# ensure_postgres: start the local cluster when it is down, pick a superuser
# that can log in, and make sure the database named by ASM_PG_NAME exists.
ensure_postgres() {
    if ! pg_up; then
        if ! command -v pg_ctlcluster >/dev/null 2>&1; then
            log "PostgreSQL is not installed; installing it with apt-get"
            command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not running and apt-get is unavailable."
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        fi
        log "Starting PostgreSQL"
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            die "could not start PostgreSQL $version (pg_ctlcluster failed)"
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
        pg_up || die "PostgreSQL did not accept connections within 30 s."
    fi
    if [ -z "${ASM_PG_USER:-}" ]; then
        for user in postgres root; do
            if psql -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" -U "$user" -d postgres \
                -Atqc 'select 1' >/dev/null 2>&1; then
                export ASM_PG_USER="$user"
                break
            fi
        done
        [ -n "${ASM_PG_USER:-}" ] || die "cannot log in to PostgreSQL as postgres or root (set ASM_PG_USER)."
    fi
    local name="${ASM_PG_NAME:-agent_sessions}"
    psql -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" -U "$ASM_PG_USER" -d postgres -Atqc \
        "select 1 from pg_database where datname = '$name'" | grep -q 1 ||
        createdb -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" -U "$ASM_PG_USER" "$name" ||
        die "could not create database $name"
}

# ensure_chromium: the admin browser test drives the system chromium (not a
# browser downloaded by `playwright install`); install it with apt-get when missing.
ensure_chromium() {
    local chromium="${ASM_CHROMIUM:-/usr/bin/chromium}"
    [ -x "$chromium" ] && return
    log "Installing chromium with apt-get (for the admin browser test)"
    command -v apt-get >/dev/null 2>&1 || die "$chromium is missing and apt-get is unavailable; install chromium."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
        die "could not install chromium with apt-get (needed by tests/browser)."
    [ -x "$chromium" ] || die "chromium was installed but $chromium does not exist (set ASM_CHROMIUM)."
}

# ensure_pgbouncer: the PgBouncer tests (tests/test_pgbouncer.py) start their own
# pgbouncer (transaction pooling, a free loopback port) from the Debian package;
# install it with apt-get when missing.
ensure_pgbouncer() {
    local pgbouncer="${ASM_PGBOUNCER:-/usr/sbin/pgbouncer}"
    [ -x "$pgbouncer" ] && return
    log "Installing pgbouncer with apt-get (for the PgBouncer tests)"
    command -v apt-get >/dev/null 2>&1 || die "$pgbouncer is missing and apt-get is unavailable; install pgbouncer."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; } ||
        die "could not install pgbouncer with apt-get (needed by tests/test_pgbouncer.py)."
    # The package enables a system-wide pgbouncer on port 6432; the tests start their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
    [ -x "$pgbouncer" ] || die "pgbouncer was installed but $pgbouncer does not exist (set ASM_PGBOUNCER)."
}

# --- Hot standby for the replica-router tests (issue #18) -------------------------
# replica_start makes a streaming replica of the local primary with pg_basebackup
# -R -X stream, in a throw-away data directory under /tmp, listening on a free
# loopback port; replica_stop stops it and removes the directory. The port and the
# directory are kept in $REPLICA_STATE, which tests/settings_replica.py reads.
REPLICA_STATE="${ASM_TEST_STATE_DIR:-$ROOT/.test-state}/replica.env"
REPLICA_HBA_LINE="host replication all 127.0.0.1/32 trust  # django-agent-sessions scripts/replica.sh (test standby)"

# libpq reads the password of a primary that asks for one from PGPASSWORD
# (pg_basebackup -R then writes it into the standby's primary_conninfo).
if [ -n "${ASM_PG_PASSWORD:-}" ]; then export PGPASSWORD="$ASM_PG_PASSWORD"; fi

primary_sql() {
    psql -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" -U "${ASM_PG_USER:-postgres}" \
        -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
}

# as_cluster_owner CMD...: PostgreSQL refuses to run as root, so the standby's
# data directory and server belong to the postgres OS user when we are root.
as_cluster_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_server_bin: the server binaries (pg_ctl) of the primary's major version.
pg_server_bin() {
    local major
    major="$(primary_sql 'show server_version_num')" || die "cannot reach the primary PostgreSQL."
    major=$((major / 10000))
    if [ -x "/usr/lib/postgresql/$major/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/$major/bin"
    elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/pg_ctl" ]; then
        pg_config --bindir
    else
        die "pg_ctl of PostgreSQL $major not found (install postgresql-$major)."
    fi
}

free_loopback_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

replication_allowed() {
    psql "host=${ASM_PG_HOST:-127.0.0.1} port=${ASM_PG_PORT:-5432} user=${ASM_PG_USER:-postgres} dbname=postgres replication=true" \
        -Atqc IDENTIFY_SYSTEM >/dev/null 2>&1
}

# ensure_replication_access: the primary must stream WAL to a standby. wal_level and
# max_wal_senders need a server restart, which would break everyone else's running
# tests on a shared server: we only do it when ASM_PG_ALLOW_RESTART=1. The pg_hba
# entry needs a reload only, which running sessions do not notice.
ensure_replication_access() {
    local wal_level senders
    wal_level="$(primary_sql 'show wal_level')" || die "cannot reach the primary PostgreSQL."
    senders="$(primary_sql 'show max_wal_senders')"
    if [ "$wal_level" = minimal ] || [ "$senders" -lt 2 ]; then
        if [ "${ASM_PG_ALLOW_RESTART:-}" != 1 ]; then
            die "the primary cannot stream to a standby (wal_level=$wal_level, max_wal_senders=$senders);
       set wal_level = replica and max_wal_senders >= 2 and restart it, or rerun with
       ASM_PG_ALLOW_RESTART=1 to let this script do it (restarts the local cluster)."
        fi
        log "Enabling WAL streaming on the primary (ALTER SYSTEM, restart)"
        primary_sql "alter system set wal_level = replica" >/dev/null
        primary_sql "alter system set max_wal_senders = 10" >/dev/null
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        pg_ctlcluster --skip-systemctl-redirect "$version" main restart ||
            die "could not restart PostgreSQL $version"
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
        pg_up || die "PostgreSQL did not come back within 30 s after the restart."
    fi
    replication_allowed && return
    local hba
    hba="$(primary_sql 'show hba_file')"
    [ -w "$hba" ] || die "replication connections to the primary are refused and $hba is not writable;
       add '$REPLICA_HBA_LINE' at its top and reload PostgreSQL."
    if ! grep -qF "$REPLICA_HBA_LINE" "$hba"; then
        log "Allowing loopback replication connections in $hba (reload, no restart)"
        # pg_hba.conf is first-match: the line goes first so it wins over a
        # stricter "host replication" line further down.
        sed -i "1i $REPLICA_HBA_LINE" "$hba"
    fi
    primary_sql 'select pg_reload_conf()' >/dev/null
    for _ in $(seq 1 20); do replication_allowed && return; sleep 0.25; done
    die "the primary still refuses replication connections after adding them to $hba."
}

standby_sql() {
    psql -h 127.0.0.1 -p "$1" -U "${ASM_PG_USER:-postgres}" -d postgres -Atqc "$2" 2>/dev/null
}

replica_running() {
    [ -f "$REPLICA_STATE" ] || return 1
    # shellcheck disable=SC1090
    (source "$REPLICA_STATE" && [ "$(standby_sql "$ASM_REPLICA_PORT" 'select pg_is_in_recovery()')" = t ])
}

# replica_start: make the standby (or reuse the running one) and wait until it streams.
replica_start() {
    if replica_running; then
        log "Hot standby already running ($(cat "$REPLICA_STATE" | tr '\n' ' '))"
        return
    fi
    [ -f "$REPLICA_STATE" ] && replica_stop
    ensure_replication_access
    local bin dir port attempt
    bin="$(pg_server_bin)"
    dir="$(mktemp -d /tmp/asm-replica-XXXXXX)"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    mkdir -p "$(dirname "$REPLICA_STATE")"
    printf 'ASM_REPLICA_DIR=%s\n' "$dir" >"$REPLICA_STATE"
    log "Copying the primary into $dir/data (pg_basebackup -R -X stream)"
    as_cluster_owner pg_basebackup -D "$dir/data" -R -X stream -c fast \
        -h "${ASM_PG_HOST:-127.0.0.1}" -p "${ASM_PG_PORT:-5432}" -U "${ASM_PG_USER:-postgres}" ||
        die "pg_basebackup from the primary failed."
    # A hot standby needs these at least as large as on the primary.
    local limits
    limits="$(primary_sql "select string_agg(name || ' = ' || setting, E'\n') from pg_settings
        where name in ('max_connections', 'max_worker_processes', 'max_wal_senders',
                       'max_prepared_transactions', 'max_locks_per_transaction')")"
    as_cluster_owner tee "$dir/data/pg_hba.conf" >/dev/null <<HBA
local all all trust
host all all 127.0.0.1/32 trust
HBA
    for attempt in 1 2 3; do
        port="$(free_loopback_port)"
        as_cluster_owner tee "$dir/data/postgresql.conf" >/dev/null <<CONF
# Test standby made by django-agent-sessions scripts/replica.sh; removed by 'replica.sh stop'.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
hot_standby = on
shared_buffers = 32MB
fsync = off
$limits
CONF
        if as_cluster_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
            break
        fi
        [ "$attempt" = 3 ] && { tail -n 20 "$dir/server.log" >&2; die "the standby did not start (log: $dir/server.log)."; }
        log "port $port was taken; retrying"
    done
    printf 'ASM_REPLICA_PORT=%s\nASM_REPLICA_DIR=%s\n' "$port" "$dir" >"$REPLICA_STATE"
    for _ in $(seq 1 120); do
        [ "$(standby_sql "$port" "select status from pg_stat_wal_receiver")" = streaming ] && break
        sleep 0.25
    done
    [ "$(standby_sql "$port" "select status from pg_stat_wal_receiver")" = streaming ] || {
        tail -n 20 "$dir/server.log" >&2
        die "the standby on port $port is not streaming from the primary (log: $dir/server.log)."
    }
    log "Hot standby streaming on 127.0.0.1:$port (data in $dir)"
}

# replica_stop: stop the standby and remove its data directory.
replica_stop() {
    [ -f "$REPLICA_STATE" ] || return 0
    local ASM_REPLICA_DIR="" ASM_REPLICA_PORT=""
    # shellcheck disable=SC1090
    source "$REPLICA_STATE"
    if [ -n "$ASM_REPLICA_DIR" ] && [ -d "$ASM_REPLICA_DIR/data" ]; then
        as_cluster_owner "$(pg_server_bin)/pg_ctl" -D "$ASM_REPLICA_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    case "$ASM_REPLICA_DIR" in
    /tmp/asm-replica-*) rm -rf "$ASM_REPLICA_DIR" ;;
    esac
    rm -f "$REPLICA_STATE"
    log "Hot standby stopped${ASM_REPLICA_PORT:+ (port $ASM_REPLICA_PORT)}"
}

replica_status() {
    if replica_running; then
        # shellcheck disable=SC1090
        source "$REPLICA_STATE"
        echo "running: port $ASM_REPLICA_PORT, data $ASM_REPLICA_DIR, receiver" \
            "$(standby_sql "$ASM_REPLICA_PORT" "select status from pg_stat_wal_receiver")," \
            "replay paused: $(standby_sql "$ASM_REPLICA_PORT" "select pg_is_wal_replay_paused()")"
    else
        echo "not running"
        return 1
    fi
}
