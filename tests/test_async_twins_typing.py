"""The async twins are declared: introspection and the type checker both see them."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from agent_sessions import ports
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.query import DjangoQueryAPI
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore

SERVICES = [DjangoSessionStore, DjangoArtifactRegistry, DjangoQueryAPI, DjangoMaintenance]
ROOT = Path(__file__).resolve().parent.parent


def _twins(cls: type) -> dict[str, object]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if name.startswith("a")
        and callable(getattr(cls, name[1:], None))
        and not inspect.iscoroutinefunction(getattr(cls, name[1:]))
    }


@pytest.mark.parametrize("cls", SERVICES, ids=lambda c: c.__name__)
def test_every_twin_is_a_declared_coroutine_with_resolvable_hints(cls: type) -> None:
    twins = _twins(cls)
    assert twins
    for name, twin in twins.items():
        assert inspect.iscoroutinefunction(twin), name
        hints = typing.get_type_hints(twin)
        assert hints["return"] == typing.get_type_hints(getattr(cls, name[1:]))["return"], name


def test_no_twin_is_attached_at_run_time() -> None:
    for cls in SERVICES:
        for twin in _twins(cls).values():
            assert not hasattr(twin, "__asm_async_twin__")


def test_mypy_accepts_awaiting_the_twins() -> None:
    sample = ROOT / "tests" / "typecheck" / "async_twins_sample.py"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("cls", "protocol"),
    [
        (DjangoSessionStore, ports.SessionStore),
        (DjangoArtifactRegistry, ports.ArtifactRegistry),
        (DjangoQueryAPI, ports.QueryAPI),
        (DjangoMaintenance, ports.Maintenance),
    ],
    ids=lambda c: getattr(c, "__name__", ""),
)
def test_services_subclass_their_protocol_and_inherit_its_docstrings(
    cls: type, protocol: type
) -> None:
    assert issubclass(cls, protocol)
    assert isinstance(cls.__new__(cls), protocol)
    for name in dir(protocol):
        if not name.startswith("_"):
            assert inspect.getdoc(getattr(cls, name)), name


@pytest.mark.parametrize(
    ("cls", "protocol", "name"),
    [(DjangoArtifactRegistry, ports.ArtifactRegistry, "get_by_key")]
    + [
        (DjangoQueryAPI, ports.QueryAPI, name)
        for name in dir(ports.QueryAPI)
        if not name.startswith("_")
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_a_method_documented_once_inherits_the_protocols_docstring(
    cls: type, protocol: type, name: str
) -> None:
    method = getattr(cls, name)
    assert method.__doc__ is None
    assert inspect.getdoc(method) == inspect.getdoc(getattr(protocol, name))
