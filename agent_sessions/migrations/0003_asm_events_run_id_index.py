"""An index on ``asm_events.run_id`` for the admin's event search by run id.

AgentSessionManager indexes ``(session_id, run_id)``, which cannot serve a
lookup by run id alone: the admin's search box and ``?run_id=`` links would
scan ``asm_events``. bench/bench_admin.py shows what it buys at 1,000,000
events. An index that already exists (an adopted table) is kept as it is.
"""

from django.db import migrations

import agent_sessions.fields
import agent_sessions.operations


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0002_query_keyset_indexes")]

    operations = [
        agent_sessions.operations.AddIndexIfMissing(
            model_name="event",
            index=agent_sessions.fields.AsmIndex(fields=["run_id"], name="asm_events_run_id_index"),
        ),
    ]
