"""Durable, ordered, searchable AI-agent session history for Django.

The persistence layer of AgentSessionManager (ASM) on the same ``asm_*``
tables, so Django and Elixir services can share one database.
"""

__version__ = "0.1.0.dev0"
