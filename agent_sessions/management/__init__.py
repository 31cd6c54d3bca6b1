"""Management commands of agent_sessions."""
