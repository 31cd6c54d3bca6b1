#!/usr/bin/env bash
# Set everything up and run the demo: the example project on SQLite (or on
# DATABASE_URL when set) with demo data, served by uvicorn (ASGI): the admin on
# http://127.0.0.1:8000/admin/ and the live event page on http://127.0.0.1:8000/live/.
#   bash scripts/demo.sh                 # serve on 127.0.0.1:8000
#   ASM_DEMO_PORT=8080 bash scripts/demo.sh
#   ASM_DEMO_NO_SERVER=1 bash scripts/demo.sh   # set up and load data only
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
cd "$ROOT"

ensure_venv postgres,server
export DJANGO_SETTINGS_MODULE=example_project.settings
PY="$VENV/bin/python"
user="${ASM_DEMO_USER:-admin}"
password="${ASM_DEMO_PASSWORD:-admin}"
port="${ASM_DEMO_PORT:-8000}"

log "Migrating the example project (${DATABASE_URL:-SQLite: example_project/db.sqlite3})"
"$PY" manage.py migrate --noinput -v 0
log "Loading demo data"
# Refuses (exit 1, nothing changed) on a database that holds sessions the demo
# did not create; --reset deletes only the demo's own sessions.
if ! "$PY" manage.py load_demo_data --reset; then
    echo "demo.sh: not loading demo data into ${DATABASE_URL:-this database}: it holds other sessions." >&2
    echo "          Point DATABASE_URL at an empty database (or unset it for SQLite)." >&2
    exit 1
fi
# Created only when missing: an existing user keeps its password.
"$PY" manage.py demo_admin --username "$user" --password "$password"
"$PY" manage.py demo_agent ses_live_demo --count 3 --interval 0 -v 0

cat <<MSG

  Demo ready.  Admin: http://127.0.0.1:$port/admin/
               Live events: http://127.0.0.1:$port/live/ses_live_demo/
               JSON API: http://127.0.0.1:$port/agent-sessions/sessions/
  Log in as:   $user / $password (when the demo created that user)

  Try:  $PY manage.py asm_maintenance --dry-run -v 2
        $PY manage.py demo_agent ses_live_demo     # in another terminal: watch the live page
        $PY manage.py shell -c "from agent_sessions.store import DjangoSessionStore; print(DjangoSessionStore().list_sessions(limit=3))"

MSG
if [ -n "${ASM_DEMO_NO_SERVER:-}" ]; then
    exit 0
fi
# ASGI, so that the live page's stream holds no thread or database connection while idle.
exec "$PY" -m uvicorn example_project.asgi:application --host 127.0.0.1 --port "$port"
