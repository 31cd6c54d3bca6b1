"""The full-text search index of asm_events (see agent_sessions/search.py, docs/search.md).

ASM's five tables are left as they are: the index lives in tables of its own
(``asm_events_search``, plus the FTS5 table on SQLite) that triggers on
``asm_events`` keep in step, whoever writes the events. Existing events are
indexed by this migration; on PostgreSQL it uses ``TEXT_SEARCH_CONFIG`` as
set when it runs.
"""

from django.db import migrations

import agent_sessions.operations


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0003_asm_events_run_id_index")]

    operations = [agent_sessions.operations.InstallEventSearch()]
