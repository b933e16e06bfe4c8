"""dservercore's own schema workflow (Flask-Migrate) on a dserver with the plugin.

dservercore's README has operators run ``flask db init``, ``flask db
migrate`` and ``flask db upgrade``, and migrate/upgrade again after each
dservercore upgrade. Here those real commands run in a subprocess, as an
operator runs them, on a database where the plugin already keeps waiting
events: the plugin's tables and rows must come through both rounds, and no
generated migration may mention them.
"""
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from devstack.dserver import dserver_env
from devstack.ports import python_env
from dserver_notification_plugin.db import Database, Inbox
from dserver_notification_plugin.db.tables import metadata
from dserver_notification_plugin.keys import DatasetTarget

FLASK = Path(sys.executable).with_name("flask")


def flask_db(workdir, env, *args):
    """``flask db <args>`` in ``workdir``, as an operator runs it; its output."""
    result = subprocess.run(
        [str(FLASK), "db", *args], cwd=workdir, capture_output=True, text=True,
        env=python_env(dict(env, FLASK_APP="dservercore")), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def wait_for_events(engine, uuids):
    """Events waiting in the inbox, as a running dserver would have them."""
    targets = [DatasetTarget("s3://b", f"s3://b/{u}", u, "readme") for u in uuids]
    Inbox(Database(engine=engine)).enqueue(targets, debounce=3600, max_delay=7200)


def plugin_rows(engine):
    """Every row of every plugin table, by table."""
    with engine.connect() as conn:
        return {name: sorted(tuple(map(str, row)) for row in conn.execute(sa.select(table)))
                for name, table in metadata.tables.items()}


def generated_migrations(workdir):
    return {path.name: path.read_text()
            for path in (Path(workdir) / "migrations" / "versions").glob("*.py")}


def test_flask_db_workflow_twice_keeps_the_plugin_tables(tmp_path, database, mongo, bucket):
    workdir = tmp_path / "dserver"
    env = dserver_env(workdir, mongo.uri, {bucket.name: bucket.base_uri},
                      {"DSERVER_NOTIFY_WORKER": "off"}, database_uri=database)
    engine = sa.create_engine(database)
    try:
        wait_for_events(engine, [f"{n:04d}" for n in range(5)])
        before = plugin_rows(engine)
        assert len(before["notification_inbox"]) == 5

        # First set-up, as dservercore's README says.
        flask_db(workdir, env, "init")
        flask_db(workdir, env, "migrate", "-m", "dserver tables")
        flask_db(workdir, env, "upgrade")
        first = generated_migrations(workdir)
        assert first, "the first migrate generates dservercore's tables"
        assert any("create_table('user'" in text or 'create_table("user"' in text
                   for text in first.values()), first
        assert not [name for name, text in first.items() if "notification_" in text]
        assert plugin_rows(engine) == before
        assert "user" in sa.inspect(engine).get_table_names()

        # The plugin goes on working; then migrate and upgrade again, as after
        # a dservercore upgrade.
        wait_for_events(engine, [f"{n:04d}" for n in range(5, 8)])
        before = plugin_rows(engine)
        flask_db(workdir, env, "migrate", "-m", "after an upgrade")
        flask_db(workdir, env, "upgrade")
        second = generated_migrations(workdir)
        assert not [name for name, text in second.items() if "notification_" in text]
        assert plugin_rows(engine) == before
        assert len(before["notification_inbox"]) == 8
    finally:
        engine.dispose()


def test_the_rule_leaves_dservercore_tables_to_alembic():
    from dserver_notification_plugin.alembic_rules import include_name, include_object
    table = metadata.tables["notification_inbox"]
    assert not include_name("notification_inbox", "table", {})
    assert not include_name("ix_notification_inbox_state_due_at", "index",
                            {"table_name": "notification_inbox"})
    assert not include_object(table, table.name, "table", True, None)
    assert not include_object(table.c.state, "state", "column", False, None)
    assert include_name("user", "table", {})
    assert include_name("uuid", "column", {"table_name": "dataset"})
    assert include_name(None, "schema", {})
    dserver_table = sa.Table("dataset", sa.MetaData(), sa.Column("uuid", sa.String))
    assert include_object(dserver_table, "dataset", "table", True, None)
    assert include_object(dserver_table.c.uuid, "uuid", "column", True, None)
