"""Versioned schema migrations on SQLite and PostgreSQL."""
import threading

import sqlalchemy as sa

from dserver_notification_plugin.db import Counters, Database, Inbox, migrations, tables
from dserver_notification_plugin.db.migrations import LATEST_VERSION, MIGRATIONS, migrate
from dserver_notification_plugin.keys import DatasetTarget
from dserver_notification_plugin.states import State


def unversioned_tables():
    """The plugin's tables as 0.4 created them: no version table, no (state, due_at) index."""
    legacy = sa.MetaData()
    sa.Table(
        "notification_inbox", legacy,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset_uri", sa.String(1024), nullable=False, unique=True),
        sa.Column("base_uri", sa.String(1024), nullable=False),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("generation", sa.Integer, nullable=False, default=0),
        sa.Column("claimed_generation", sa.Integer, nullable=False, default=0),
        sa.Column("events", sa.Integer, nullable=False, default=0),
        sa.Column("first_event_at", sa.Float, nullable=False),
        sa.Column("last_event_at", sa.Float, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.Text),
        sa.Column("last_outcome", sa.String(32)),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.Float),
        sa.Column("finished_at", sa.Float))
    sa.Table("notification_es_documents", legacy,
             sa.Column("doc_id", sa.String(512), primary_key=True),
             sa.Column("bucket", sa.String(255), nullable=False),
             sa.Column("key", sa.Text, nullable=False),
             sa.Column("updated_at", sa.Float, nullable=False))
    sa.Table("notification_counters", legacy,
             sa.Column("name", sa.String(64), primary_key=True),
             sa.Column("value", sa.BigInteger, nullable=False, default=0))
    return legacy


def inbox_row(n, **values):
    row = dict(dataset_uri=f"s3://b/{n:08d}", base_uri="s3://b", uuid=f"{n:08d}",
               state="done", generation=1, claimed_generation=1, events=3,
               first_event_at=10.0 + n, last_event_at=11.0 + n, due_at=12.0 + n, attempts=1,
               last_outcome="registered", fingerprint=f"fp{n}")
    row.update(values)
    return row


def dump(engine, legacy):
    """Every row of the plugin's data tables, in the columns of ``legacy``."""
    with engine.connect() as conn:
        return {name: sorted(tuple(r) for r in conn.execute(
                    sa.select(*legacy.tables[name].c).order_by(legacy.tables[name].c[0])))
                for name in ("notification_inbox", "notification_es_documents",
                             "notification_counters")}


def versions(engine):
    with engine.connect() as conn:
        return [v for (v,) in conn.execute(sa.text(
            "SELECT version FROM notification_schema_version ORDER BY version"))]


def test_an_unversioned_database_is_upgraded_without_losing_rows(engine):
    legacy = unversioned_tables()
    legacy.create_all(engine)
    with engine.begin() as conn:
        conn.execute(legacy.tables["notification_inbox"].insert(),
                     [inbox_row(n) for n in range(50)]
                     + [inbox_row(50, state="dead", last_error="S3 down"),
                        inbox_row(51, state="pending", fingerprint=None)])
        conn.execute(legacy.tables["notification_es_documents"].insert(),
                     [dict(doc_id="d1", bucket="b", key="k/dtool", updated_at=1.0)])
        conn.execute(legacy.tables["notification_counters"].insert(),
                     [dict(name="received", value=880), dict(name="accepted", value=440)])
    before = dump(engine, legacy)

    applied = migrate(engine)

    assert [step.version for step in applied] == [step.version for step in MIGRATIONS]
    assert versions(engine) == [step.version for step in MIGRATIONS]
    assert dump(engine, legacy) == before
    with engine.connect() as conn:  # what the old rows heard and saw is not known
        assert conn.execute(sa.text("SELECT count(*) FROM notification_inbox "
                                    "WHERE heard IS NULL AND seen IS NULL")).scalar() == 52
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("notification_inbox")}
    assert "ix_notification_inbox_state_due_at" in indexes
    # and the inbox goes on with the old rows: an event revives a done entry
    inbox = Inbox(Database(engine=engine))
    inbox.enqueue([DatasetTarget("s3://b", "s3://b/00000007", "00000007", "readme")],
                  debounce=2, max_delay=30, at=100)
    [entry] = inbox.entries(["s3://b/00000007"])
    assert (entry.state, entry.events, entry.fingerprint) == (State.PENDING, 1, "fp7")
    assert len(inbox.entries()) == 52


def test_migrating_again_changes_nothing(engine):
    assert migrate(engine)
    assert migrate(engine) == []
    assert versions(engine) == [step.version for step in MIGRATIONS]


def test_hosts_starting_at_once_migrate_once(database):
    engines = [sa.create_engine(database) for _ in range(4)]
    results, errors = [], []
    start = threading.Barrier(len(engines))

    def host(engine):
        try:
            start.wait()
            results.append([step.version for step in migrate(engine)])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(e,)) for e in engines]
    [t.start() for t in threads]
    [t.join() for t in threads]
    try:
        assert errors == []
        assert sorted(results, key=len) == [[], [], [], list(range(1, LATEST_VERSION + 1))]
        assert versions(engines[0]) == list(range(1, LATEST_VERSION + 1))
    finally:
        [e.dispose() for e in engines]


def test_an_appended_step_adds_a_column_and_keeps_the_rows(engine, monkeypatch):
    """How the next issue adds a column: declare it, append a step."""
    migrate(engine)
    Counters(Database(engine=engine)).add({"received": 5})
    extra = sa.Table("notification_test_extra", tables.metadata,
                     sa.Column("name", sa.String(64), primary_key=True))
    try:
        extra.create(engine)
        with engine.begin() as conn:
            conn.execute(extra.insert(), [{"name": "kept"}])
        size = dict(type_=sa.Integer, nullable=False, server_default="0")
        extra.append_column(sa.Column("size", **size))  # the current table
        step = migrations.Step(LATEST_VERSION + 1, "test: extra.size",  # the frozen step
                               migrations.add_column("notification_test_extra",
                                                     sa.Column("size", **size)))
        monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, step])
        monkeypatch.setattr(migrations, "LATEST_VERSION", step.version)
        assert [s.version for s in migrate(engine)] == [step.version]
        with engine.connect() as conn:
            assert conn.execute(sa.select(extra)).all() == [("kept", 0)]
        assert Counters(Database(engine=engine)).totals() == {"received": 5}
    finally:
        tables.metadata.remove(extra)


def test_flask_notification_migrate_reports_the_version(app):
    result = app.test_cli_runner().invoke(args=["notification", "migrate"])
    assert result.exit_code == 0, result.output
    assert f"notification schema at version {LATEST_VERSION}" in result.output
