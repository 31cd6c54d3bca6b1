"""The README's five-minute tour runs as written (store, query and ORM snippets)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _tour_blocks() -> list[str]:
    """The README's Python blocks that run synchronously against the database."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    runnable = [b for b in blocks if "await " not in b and "INSTALLED_APPS" not in b]
    assert len(runnable) >= 3, "the README tour lost its store/query/ORM examples"
    return runnable


@pytest.mark.django_db(transaction=True)
def test_readme_tour_runs_as_written() -> None:
    namespace: dict[str, object] = {}
    for block in _tour_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    session = namespace["session"]
    page = namespace["page"]
    assert namespace["stored"].sequence_number == 1  # type: ignore[attr-defined]
    assert [s.id for s in page.sessions] == [session.id]  # type: ignore[attr-defined]
