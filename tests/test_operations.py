"""Status, metrics and retry against the real Mongo-wire and S3 servers.

CLI commands run through ``app.test_cli_runner()``, i.e. in the process and
with the app of the test, exactly as ``flask notification ...`` would run
them against the same database.
"""
import json
import re

from devstack.dserver import ADMIN, USER
from devstack.payloads import minio_bodies_for_keys, minio_webhook_body
from devstack.s3 import list_keys




def notify_dataset(client, bucket):
    """POST one MinIO notification per object of the bucket; return the answers."""
    answers = []
    for body in minio_bodies_for_keys(bucket.name, list_keys(bucket.s3, bucket.name)):
        response = client.post("/webhook/notify", json=body)
        assert response.status_code == 202, response.get_json()
        answers.append(response.get_json())
    return answers










# --- status ---------------------------------------------------------------------

def test_status_counts_notifications_and_inbox(app, client, bucket, drain, cli, status_json):
    bucket.put_dataset("counted", items=3)
    answers = notify_dataset(client, bucket)
    accepted = sum(a["accepted"] for a in answers)
    ignored = sum(a["ignored"] for a in answers)
    assert accepted and ignored

    status = status_json(app)
    expected = {"received": accepted + ignored, "accepted": accepted,
                "ignored": ignored, "unreadable": 0, "refused": 0}
    assert status["events"]["since_start"] == expected
    assert status["events"]["total"] == expected
    assert status["inbox"] == {"pending": 1, "processing": 0, "failed": 0,
                               "done": 0, "dead": 0}
    assert status["oldest_pending_age_seconds"] >= 0
    assert status["dead_entries"] == []

    drain(app)
    status = status_json(app)
    assert status["inbox"]["done"] == 1 and status["inbox"]["pending"] == 0
    assert status["oldest_pending_age_seconds"] is None
    assert status["sync"]["total"]["registered"] == 1
    assert status["sync"]["total"]["index_registrations"] == 1  # seen by our hook

    text = cli(app, "status")
    assert text.exit_code == 0, text.output
    assert re.search(rf"^  accepted +{accepted} +{accepted}$", text.output, re.M)
    assert "done" in text.output and "oldest pending entry: none" in text.output


def test_status_route_is_for_admins_only(app, client, bucket, admin_headers, user_headers,
                                         status_json):
    bucket.put_dataset("watched", items=1)
    accepted = sum(a["accepted"] for a in notify_dataset(client, bucket))

    response = client.get("/webhook/status", headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["events"]["total"]["accepted"] == accepted
    assert body["inbox"]["pending"] == 1
    assert body["inbox"] == status_json(app)["inbox"]

    assert client.get("/webhook/status", headers=user_headers).status_code == 403
    assert client.get("/webhook/status").status_code == 401


def test_status_route_is_not_behind_the_network_guard(app, client, admin_headers):
    """Admins read it from anywhere; the notification secret is not asked for."""
    outside = {"REMOTE_ADDR": "10.1.2.3"}
    response = client.get("/webhook/status", headers=admin_headers, environ_base=outside)
    assert response.status_code == 200, response.get_json()
    assert client.get("/webhook/status", environ_base=outside).status_code == 401


# --- metrics ---------------------------------------------------------------------



def test_metrics_in_prometheus_text_format(app, client, bucket, drain, metric_samples):
    bucket.put_dataset("scraped", items=2)
    accepted = sum(a["accepted"] for a in notify_dataset(client, bucket))
    assert client.get("/webhook/metrics",
                      environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    drain(app)

    response = client.get("/webhook/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    found = metric_samples(response.get_data(as_text=True))
    assert found[("dserver_notification_events_total", (("kind", "accepted"),))] == accepted
    assert found[("dserver_notification_events_total", (("kind", "refused"),))] == 1
    assert found[("dserver_notification_process_events_total",
                  (("kind", "accepted"),))] == accepted
    assert found[("dserver_notification_sync_outcomes_total",
                  (("outcome", "registered"),))] == 1
    assert found[("dserver_notification_sync_outcomes_total",
                  (("outcome", "index_registrations"),))] == 1
    assert found[("dserver_notification_inbox_entries", (("state", "done"),))] == 1
    assert found[("dserver_notification_inbox_entries", (("state", "pending"),))] == 0
    assert found[("dserver_notification_oldest_pending_age_seconds", ())] == 0
    assert found[("dserver_notification_processing_latency_seconds_count", ())] == 1


def test_metrics_route_is_refused_outside_the_allowed_networks(app, client, admin_headers):
    response = client.get("/webhook/metrics", headers=admin_headers,
                          environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 403


def test_metrics_route_asks_for_the_notification_secret(make_app, bucket):
    app = make_app([bucket], notify={"DSERVER_NOTIFY_AUTH_TOKEN": "s3cret"})
    client = app.test_client()
    assert client.get("/webhook/metrics").status_code == 401
    response = client.get("/webhook/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200


# --- retry -----------------------------------------------------------------------

def test_retry_revives_a_dead_entry(make_app, make_bucket, bucket, auth_headers, drain, cli,
                                    status_json, listed):
    """A bucket mapped to a base URI dserver does not know: sync gives up at
    once; registering the base URI and retrying indexes the dataset."""
    stray = make_bucket()
    mapping = {bucket.name: bucket.base_uri, stray.name: stray.base_uri}
    app = make_app([bucket], notify={"DSERVER_NOTIFY_BUCKET_TO_BASE_URI": json.dumps(mapping)})
    client = app.test_client()
    uri = stray.put_dataset("stray", items=2)
    notify_dataset(client, stray)
    drain(app)

    status = status_json(app)
    assert status["inbox"]["dead"] == 1
    [dead] = status["dead_entries"]
    assert dead["dataset_uri"] == uri
    assert "is not registered in dserver" in dead["last_error"]
    assert f"#{dead['id']} {uri}" in cli(app, "status").output

    _register_base_uri(app, stray.base_uri)
    result = cli(app, "retry", str(dead["id"]))
    assert result.exit_code == 0, result.output
    assert "requeued 1 dead entry" in result.output
    drain(app)

    headers = auth_headers(app, USER)
    assert listed(client, headers) == [uri]
    assert status_json(app)["inbox"]["dead"] == 0


def test_retry_all_dead_and_usage(app, cli):
    assert cli(app, "retry").exit_code == 2
    assert cli(app, "retry", "1", "--all-dead").exit_code == 2
    result = cli(app, "retry", "--all-dead")
    assert result.exit_code == 0 and "requeued 0 dead entries" in result.output
    result = cli(app, "retry", "12345")
    assert "1 of the given IDs were not dead entries" in result.output


def test_purge_deletes_dead_entries_by_hand(app, bucket, cli):
    inbox = app.extensions["dserver_notification"].inbox
    uuid = "49f0bf41-471b-4781-855e-161fe81ffb0d"
    app.test_client().post("/webhook/notify",
                           json=minio_webhook_body(bucket.name, f"{uuid}/dtool"))
    [claimed] = inbox.claim(60, ignore_due=True)
    inbox.fail(claimed, "boom", 0, 1, give_up=True)
    assert cli(app, "purge").exit_code == 2
    result = cli(app, "purge", str(claimed.id), "777")
    assert result.exit_code == 0 and "deleted 1 dead entry" in result.output
    assert "1 of the given IDs were not dead entries" in result.output
    assert inbox.entries() == []
    assert "deleted 0 dead entries" in cli(app, "purge", "--all-dead").output


def _register_base_uri(app, base_uri):
    from dservercore.utils import register_base_uri, register_permissions
    with app.app_context():
        register_base_uri(base_uri)
        register_permissions(base_uri, {"users_with_search_permissions": [ADMIN, USER],
                                        "users_with_register_permissions": [ADMIN, USER]})
