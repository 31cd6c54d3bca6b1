"""Rebuild the full-text search index with each event's timestamp beside its document.

Search ranks from the index alone when no filter narrows it, which needs the
timestamp (the tie-break after the rank) in the index. Going backwards keeps
the index (0004 is where it is created and dropped).
"""

from django.db import migrations

import agent_sessions.operations


class Migration(migrations.Migration):
    dependencies = [("agent_sessions", "0004_event_text_search")]

    operations = [agent_sessions.operations.InstallEventSearch(rebuild=True)]
