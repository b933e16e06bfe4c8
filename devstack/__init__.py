"""The development stack: real servers for the tests, the demo and the benchmark.

Not part of the plugin and not in its wheel (``[tool.setuptools] packages``
in pyproject.toml lists the plugin only); it is imported from the
repository root, which pytest (``pythonpath``), ``python -m demo`` and
``python -m bench`` put on ``sys.path``. No pytest in here.

One module per server, plus what they share:

* ``ports``: free ports, ``wait_for_port``, log tails, ``ServerError``,
  subprocess start and stop, the ``Server`` base class;
* ``mongo``: nx-27017, a Mongo-wire server over SQLite (or a real MongoDB
  named by ``DSERVER_TEST_MONGO_URI``);
* ``moto``: moto_server, S3 and SNS with HTTP deliveries;
* ``sqs``: SQS queues on moto_server, notified by buckets directly or
  through SNS, and the environment a dserver needs to consume them;
* ``sns``: a fake SNS host that signs messages with its own key and
  serves the certificate, confirms subscriptions, or misbehaves;
* ``seaweed``: SeaweedFS, S3 gateway and filer webhook;
* ``proxy``: an S3 proxy in front of moto that forwards every request and
  holds one chosen request until the test releases it (races on demand);
* ``s3``: boto3 clients, listing and bulk removal, for any of those;
* ``datasets``: dtool-s3 settings, dataset copies, buckets, write order;
* ``dserver``: dserver's environment, database preparation, JWTs, and
  ``LiveDserver``, dserver under gunicorn;
* ``payloads``: notification bodies as MinIO sends them;
* ``postgres``: PostgreSQL from the pgserver wheel, a fresh database per
  app, its URI passed to ``dserver.dserver_env(database_uri=...)``
  (SQLite is the default).
"""
