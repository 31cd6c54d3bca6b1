"""The domain layer imports no Django: ``core``, ``errors``, ``ports``, ``retention``.

Checked in a fresh interpreter, so that modules the test run already imported
cannot hide an import.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "agent_sessions.core",
        "agent_sessions.errors",
        "agent_sessions.ports",
        "agent_sessions.retention",
    ],
)
def test_the_domain_layer_imports_no_django(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('django')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_records_are_importable_from_core_where_the_contract_names_them() -> None:
    from agent_sessions import core
    from agent_sessions.core import records, stored, vocabulary

    assert core.Event is records.Event
    assert core.Session is records.Session
    assert core.Run is records.Run
    assert core.from_stored is stored.from_stored
    assert core.EventType is vocabulary.EventType
