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
