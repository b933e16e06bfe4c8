"""Every corpus payload replayed through the Flask routes of a real dserver app.

Each request goes to the route its sender uses, with the sender's headers;
the answer must be what the sender treats as success (or the refusal the
index expects), with the listed accepted and ignored counts, and the inbox
must then hold exactly the listed dataset URIs. Mongo is the session's
nx-27017 server; the inbox is dservercore's SQL database.

The SNS envelopes of the corpus carry AWS's signatures, whose certificates
cannot be fetched from this machine, so the replay app switches SNS
verification off, as the moto tests do; tests/test_sns_trust.py and
tests/test_routes_security.py verify signatures for real.
"""
import json

import pytest
import sqlalchemy as sa

from dserver_notification_plugin.db.tables import inbox
from tests.corpus import CORPUS_BASE_URI, CORPUS_BUCKET, PAYLOADS
from devstack.dserver import app_config, dserver_env, prepare_index


@pytest.fixture(scope="module")
def corpus_app(tmp_path_factory, mongo):
    import dservercore
    env = dserver_env(tmp_path_factory.mktemp("corpus-app"), mongo.uri,
                      {CORPUS_BUCKET: CORPUS_BASE_URI},
                      {"DSERVER_NOTIFY_WORKER": "off", "DSERVER_NOTIFY_SNS_VERIFY": "off"})
    app = dservercore.create_app(app_config(env))
    app.testing = True
    prepare_index(app, [CORPUS_BASE_URI])
    return app


def clear_inbox(app):
    with app.extensions["dserver_notification"].db.transaction() as conn:
        conn.execute(sa.delete(inbox))


def inbox_uris(app):
    return sorted(entry.dataset_uri for entry in app.extensions["dserver_notification"].inbox.entries())


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.file for p in PAYLOADS])
def test_corpus_payload_through_its_route(corpus_app, payload):
    clear_inbox(corpus_app)
    answer = corpus_app.test_client().open(payload.path, method=payload.method,
                                           data=payload.body, headers=payload.request_headers())
    assert answer.status_code == payload.status, answer.data[:300]
    assert answer.is_json
    if 200 <= payload.status < 300:
        counts = answer.get_json()
        assert (counts["accepted"], counts["ignored"]) == (payload.accepted, payload.ignored)
    assert inbox_uris(corpus_app) == sorted(payload.datasets)


def test_one_request_with_every_minio_record_keeps_the_good_ones(corpus_app):
    """MinIO's records of the corpus, batched, plus one that cannot be read."""
    minio = [p for p in PAYLOADS if p.file.startswith("minio/webhook-")]
    records = [json.loads(p.body)["Records"][0] for p in minio]
    broken = json.loads(json.dumps(records[0]))
    broken["s3"]["object"]["key"] = "%C3%28"  # minio:s3 says form-encoded: not UTF-8
    clear_inbox(corpus_app)
    answer = corpus_app.test_client().post("/webhook/notify", json={"Records": records + [broken]})
    assert answer.status_code == 202
    assert answer.get_json() == {"accepted": sum(p.accepted for p in minio),
                                 "ignored": sum(p.ignored for p in minio) + 1}
    assert inbox_uris(corpus_app) == sorted(uri for p in minio for uri in p.datasets)
