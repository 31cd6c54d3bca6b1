"""Migration operations that adopt tables an Elixir (Ecto/Ash) application created.

ASM's Ecto migration and this app's first migration build the same five
tables. When a Django project is pointed at a database that an Elixir service
already migrated, ``manage.py migrate`` must take those tables over without
touching their rows: :class:`AdoptOrCreateModel` creates a table only when it
is missing. For an existing table it adds any column or index an older ASM
version did not have yet, and refuses (with a readable error) a table whose
required columns are absent, since that table is not ASM's.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models import NOT_PROVIDED

from agent_sessions import search
from agent_sessions.conf import app_settings


class _LeavesWhatExists(Operation):
    """``database_forwards`` for the adopting operations: the stock operation runs only
    when the database lacks what it would build.

    The subclass names its model (:meth:`_model_name`) and says, from the
    database as it is, whether the object exists already; adopting it (adding
    what an older ASM version lacked) is part of that answer.
    """

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = _model_to_migrate(self, app_label, self._model_name(), schema_editor, to_state)
        if model is None or self._adopted(model, schema_editor):
            return
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def _model_name(self) -> str:
        raise NotImplementedError

    def _adopted(self, model: Any, schema_editor: BaseDatabaseSchemaEditor) -> bool:
        """Whether the database already has what this operation builds (adopting it if so)."""
        raise NotImplementedError


class AdoptOrCreateModel(_LeavesWhatExists, migrations.CreateModel):
    """``CreateModel`` that adopts an existing table of the same name instead of failing."""

    def _model_name(self) -> str:
        return self.name

    def _adopted(self, model: Any, schema_editor: BaseDatabaseSchemaEditor) -> bool:
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            existing = set(connection.introspection.table_names(cursor))
        if model._meta.db_table not in existing:
            return False
        self._adopt(model, schema_editor)
        return True

    def _adopt(self, model: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
        connection = schema_editor.connection
        table = model._meta.db_table
        with connection.cursor() as cursor:
            columns = {
                c.name for c in connection.introspection.get_table_description(cursor, table)
            }
        missing = [f for f in model._meta.local_concrete_fields if f.column not in columns]
        required = [
            f.column
            for f in missing
            if not f.null and f.default is NOT_PROVIDED and f.db_default is NOT_PROVIDED
        ]
        if required:
            raise ImproperlyConfigured(
                f"Table {table!r} already exists but lacks the required column(s) "
                f"{', '.join(required)}; it was not created by AgentSessionManager. "
                "Rename or drop it, then run 'manage.py migrate' again."
            )
        for field in missing:
            schema_editor.add_field(model, field)
        constraints = _constraint_names(schema_editor, table)
        for index in model._meta.indexes:
            if index.name not in constraints:
                schema_editor.add_index(model, index)

    def describe(self) -> str:
        return f"Create model {self.name} (or adopt its existing table)"


class AddIndexIfMissing(_LeavesWhatExists, migrations.AddIndex):
    """``AddIndex`` that leaves an index of the same name alone when the table already has it.

    Adopted tables may carry indexes from an earlier adoption (``migrate zero
    --fake`` then ``migrate``) or from a DBA who created them by hand.
    """

    def _model_name(self) -> str:
        return self.model_name

    def _adopted(self, model: Any, schema_editor: BaseDatabaseSchemaEditor) -> bool:
        return self.index.name in _constraint_names(schema_editor, model._meta.db_table)

    def describe(self) -> str:
        return f"{super().describe()} (unless it exists)"


class InstallEventSearch(Operation):
    """Build the full-text search index of ``asm_events`` (tables, triggers, backfill).

    See :mod:`agent_sessions.search`. The index is rebuilt from scratch each
    time this runs forwards, so an adoption (``migrate zero --fake`` then
    ``migrate``) or a changed ``TEXT_SEARCH_CONFIG`` re-applied with
    ``manage.py asm_search_index`` starts from the rows as they are. Nothing
    in Django's model state changes.
    """

    reversible = True
    reduces_to_sql = False

    def __init__(self, *, rebuild: bool = False) -> None:
        """Create the operation.

        Args:
            rebuild: A later migration rebuilding an index an earlier one
                created: going backwards leaves the index in place.
        """
        super().__init__()
        self.rebuild = rebuild

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs = {"rebuild": True} if self.rebuild else {}
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _model_to_migrate(self, app_label, "event", schema_editor, to_state) is None:
            return
        try:
            config = search.check_config_name(app_settings.TEXT_SEARCH_CONFIG)
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        search.install_search_index(schema_editor.connection, config)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if self.rebuild:
            return
        if _model_to_migrate(self, app_label, "event", schema_editor, from_state) is None:
            return
        search.remove_search_index(schema_editor.connection)

    def describe(self) -> str:
        return "Build the full-text search index of asm_events (tables and triggers)"


def _model_to_migrate(
    operation: Operation,
    app_label: str,
    model_name: str,
    schema_editor: BaseDatabaseSchemaEditor,
    to_state: ProjectState,
) -> Any | None:
    """The model ``operation`` changes, or None when the routers keep it off this database."""
    model = to_state.apps.get_model(app_label, model_name)
    if not operation.allow_migrate_model(schema_editor.connection.alias, model):
        return None
    return model


def _constraint_names(schema_editor: BaseDatabaseSchemaEditor, table: str) -> set[str]:
    """Names of the table's constraints and indexes, as the database has them now."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))
