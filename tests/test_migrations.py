"""Migrations as frozen steps: a database migrated step by step, from any
version, ends with exactly the plugin's tables (as procrastinate's
tests/migration check theirs), on SQLite and on PostgreSQL.

Alembic's ``compare_metadata`` lists every difference between a database
and :data:`.tables.metadata`: tables, columns, types, nullability, indexes
and unique constraints.
"""
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dserver_notification_plugin.db import tables
from dserver_notification_plugin.db.migrations import LATEST_VERSION, MIGRATIONS, migrate
from tests.conftest import database_kind, fresh_database
from tests.test_schema import unversioned_tables, versions


def differences(engine):
    """What the database lacks or has beyond the plugin's current tables."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, tables.metadata)


def shape(engine):
    """Columns (in order, with type, nullability and server default) and
    indexes of every table, as the database reports them."""
    inspector = sa.inspect(engine)
    return {name: ([(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(name)],
                   sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                          for i in inspector.get_indexes(name)))
            for name in sorted(inspector.get_table_names())}


@pytest.fixture
def declared(database, request, tmp_path):
    """Another database of the same kind, made straight from the declared tables."""
    engine = sa.create_engine(fresh_database(database_kind(database), request,
                                             tmp_path / "declared"))
    tables.metadata.create_all(engine)
    yield engine
    engine.dispose()


def step_by_step(engine, start):
    """Migrate to ``start``, then one version at a time to the latest."""
    migrate(engine, until=start)
    for version in range(start + 1, LATEST_VERSION + 1):
        assert [step.version for step in migrate(engine, until=version)] == [version]


def test_the_steps_are_numbered_one_by_one():
    assert [step.version for step in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))


def test_a_fresh_database_has_exactly_the_plugins_tables(engine, declared):
    migrate(engine)
    assert differences(engine) == []
    assert shape(engine) == shape(declared)


@pytest.mark.parametrize("start", range(0, LATEST_VERSION))
def test_a_database_migrated_step_by_step_equals_a_fresh_one(engine, declared, start):
    step_by_step(engine, start)
    assert versions(engine) == list(range(1, LATEST_VERSION + 1))
    assert differences(engine) == []
    assert shape(engine) == shape(declared)


def test_the_tables_of_0_4_migrated_step_by_step_equal_a_fresh_database(engine, declared):
    unversioned_tables().create_all(engine)
    step_by_step(engine, 0)
    assert differences(engine) == []
    assert shape(engine) == shape(declared)


def test_the_check_sees_a_missing_step(engine):
    """The comparison above can fail: stop one step short and it names the gap."""
    migrate(engine, until=LATEST_VERSION - 1)
    assert differences(engine) != []
