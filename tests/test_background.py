"""The loop driver every background thread runs on (background.py)."""
import threading

from dserver_notification_plugin.background import FINISHED, BackgroundThread
from dserver_notification_plugin.db import Counters, Database
from dserver_notification_plugin.tally import Tally

PATIENCE = 30.0  # a loaded machine is slow; a failure still ends


class Flaky(BackgroundThread):
    """Fails ``failing`` times, then counts one success and ends."""
    error_pause_seconds = 0.01
    error_pause_max_seconds = 0.03

    def __init__(self, failing, db=None, tally=None, counters=None):
        super().__init__(db, tally, counters)
        self.failing = failing
        self.pauses, self.story = [], []

    def on_start(self):
        self.story.append("started")

    def iterate(self):
        if self.failing:
            self.failing -= 1
            raise RuntimeError("the database is down")
        self.story.append(f"succeeded after {self.failures} failures")
        if self.tally is not None:
            self.tally.add("successes")
        return FINISHED

    def on_error(self, exc, pause):
        self.pauses.append(round(pause, 6))

    def on_stop(self):
        self.story.append("stopped")


def test_failed_iterations_back_off_doubling_up_to_the_ceiling():
    thread = Flaky(failing=4)
    thread.start()
    thread.join(PATIENCE)
    assert not thread.running
    assert thread.pauses == [0.01, 0.02, 0.03, 0.03]
    assert thread.story == ["started", "succeeded after 4 failures"]
    assert thread.failures == 0  # a success ends the run of failures
    thread.stop()
    assert thread.story[-1] == "stopped"


def test_stop_flushes_the_counts_to_the_database(engine):
    db = Database(engine=engine)
    db.migrate()
    counters = Counters(db)
    thread = Flaky(failing=0, db=db, tally=Tally(), counters=counters)
    thread.start()
    thread.join(PATIENCE)
    thread.stop()
    assert counters.totals().get("successes") == 1


class Waiting(BackgroundThread):
    """Iterates, then waits far longer than any test."""

    def __init__(self):
        super().__init__()
        self.iterations = 0
        self.iterated = threading.Event()

    def iterate(self):
        self.iterations += 1
        self.iterated.set()
        return 3600.0


def test_stop_cuts_a_wait_short_and_start_is_idempotent():
    thread = Waiting()
    thread.start()
    thread.start()  # already running: no second thread
    assert thread.iterated.wait(PATIENCE)
    thread.stop(timeout=PATIENCE)
    assert not thread.running and thread.iterations == 1
    assert [t for t in threading.enumerate() if t.name == thread.thread_name] == []


def test_a_database_error_is_logged_without_its_statement_or_parameters(caplog):
    """SQLAlchemy's text appends the statement and its parameters (what
    senders wrote); the log line keeps the error's kind and the driver's
    first line only."""
    import sqlalchemy as sa

    from dserver_notification_plugin.background import log_iteration_error

    failure = sa.exc.OperationalError(
        "INSERT INTO notification_inbox (dataset_uri) VALUES (?)",
        ("s3://bucket/secret-key-from-a-sender",), Exception("database is locked"))
    with caplog.at_level("ERROR"):
        log_iteration_error("notification worker loop", failure, 2.0)
    line = caplog.records[-1]
    assert "database is locked" in line.getMessage()
    assert "secret-key-from-a-sender" not in caplog.text
    assert "INSERT" not in caplog.text
    assert line.exc_info is None
