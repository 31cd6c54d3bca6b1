#!/usr/bin/env bash
# Set everything up and run the demo: the example project on SQLite (or on
# DATABASE_URL when set) with demo data, the admin on http://127.0.0.1:8000/admin/.
#   bash scripts/demo.sh                 # serve on 127.0.0.1:8000
#   ASM_DEMO_PORT=8080 bash scripts/demo.sh
#   ASM_DEMO_NO_SERVER=1 bash scripts/demo.sh   # set up and load data only
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

ensure_venv postgres
export DJANGO_SETTINGS_MODULE=example_project.settings
PY="$VENV/bin/python"
user="${ASM_DEMO_USER:-admin}"
password="${ASM_DEMO_PASSWORD:-admin}"
port="${ASM_DEMO_PORT:-8000}"

log "Migrating the example project (${DATABASE_URL:-SQLite: example_project/db.sqlite3})"
"$PY" manage.py migrate --noinput -v 0
log "Loading demo data"
"$PY" manage.py load_demo_data --reset
"$PY" manage.py demo_admin --username "$user" --password "$password"

cat <<MSG

  Demo ready.  Admin: http://127.0.0.1:$port/admin/
  Log in as:   $user / $password

  Try:  $PY manage.py asm_maintenance --dry-run -v 2
        $PY manage.py shell -c "from agent_sessions.store import DjangoSessionStore; print(DjangoSessionStore().list_sessions(limit=3))"

MSG
if [ -n "${ASM_DEMO_NO_SERVER:-}" ]; then
    exit 0
fi
exec "$PY" manage.py runserver "127.0.0.1:$port"
