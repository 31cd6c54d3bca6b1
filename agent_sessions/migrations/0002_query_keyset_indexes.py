"""Indexes that keep the QueryAPI's deep keyset pages index-backed (see docs/query.md).

They come on top of AgentSessionManager's reference indexes, which are left
unchanged; bench/bench_query.py shows what they buy. An index that already
exists (an adopted table) is kept as it is.
"""

from django.db import migrations

import agent_sessions.fields
import agent_sessions.operations


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0001_initial")]

    operations = [
        agent_sessions.operations.AddIndexIfMissing(
            model_name="session",
            index=agent_sessions.fields.AsmIndex(
                fields=["updated_at", "id"], name="asm_sessions_updated_at_id_index"
            ),
        ),
        agent_sessions.operations.AddIndexIfMissing(
            model_name="event",
            index=agent_sessions.fields.AsmIndex(
                fields=["sequence_number", "session_id", "id"],
                name="asm_events_sequence_number_session_id_id_index",
            ),
        ),
    ]
