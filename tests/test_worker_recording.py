"""A sync whose outcome cannot be recorded at once: retried, or given back.

The sync itself runs against real servers (moto, Mongo, SQLite); only the
inbox's ``finish`` is made to fail as a locked SQLite or a dropped
PostgreSQL connection makes it fail, with the error SQLAlchemy raises then.
"""
import pytest
import sqlalchemy.exc

import dserver_notification_plugin.worker as worker
from devstack.payloads import minio_bodies_for_keys
from devstack.s3 import list_keys
from dserver_notification_plugin.states import Outcome, State

pytestmark = pytest.mark.integration


def ext(app):
    return app.extensions["dserver_notification"]


def failing_finish(monkeypatch, inbox, failures):
    """Make the next ``failures`` calls of ``inbox.finish`` fail; return the calls."""
    real_finish, calls = inbox.finish, []

    def finish(*args, **kwargs):
        calls.append(args[0].dataset_uri)
        if len(calls) <= failures:
            raise sqlalchemy.exc.OperationalError("UPDATE notification_inbox ...", {},
                                                  Exception("database is locked"))
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(inbox, "finish", finish)
    monkeypatch.setattr(worker, "RECORD_RETRY_PAUSES", (0.01, 0.01, 0.01))
    return calls


@pytest.fixture
def notified_dataset(app, client, bucket, notify_all):
    uri = bucket.put_dataset("recorded", items=2)
    notify_all(client, minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)))
    return uri


def entry(app, uri):
    return next(e for e in ext(app).inbox.entries() if e.dataset_uri == uri)


def test_an_outcome_recorded_at_the_third_try_costs_one_registration(
        app, notified_dataset, monkeypatch):
    calls = failing_finish(monkeypatch, ext(app).inbox, failures=2)

    assert ext(app).worker.run_once(ignore_due=True) == 1

    assert calls == [notified_dataset] * 3
    assert entry(app, notified_dataset).state is State.DONE
    assert entry(app, notified_dataset).last_outcome == Outcome.REGISTERED.value
    assert ext(app).tally.since_start()["index_registrations"] == 1


def test_an_outcome_never_recorded_is_given_back_not_kept_by_a_live_process(
        app, notified_dataset, monkeypatch, auth_headers):
    failing_finish(monkeypatch, ext(app).inbox, failures=len(worker.RECORD_RETRY_PAUSES) + 1)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        ext(app).worker.run_once(ignore_due=True)
    # this process is alive: no other claimer would ever take the entry
    assert entry(app, notified_dataset).state is State.PROCESSING

    # the next round gives it back and syncs it again
    assert ext(app).worker.run_once(ignore_due=True) == 1

    assert entry(app, notified_dataset).state is State.DONE
    client = app.test_client()
    listed = client.post("/uris", json={}, headers=auth_headers(app)).get_json()
    assert [d["uri"] for d in listed] == [notified_dataset]
