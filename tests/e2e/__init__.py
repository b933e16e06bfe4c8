"""End-to-end tests: real storage servers notify a gunicorn-served dserver.

The tests under ``tests/e2e`` talk to dserver only over HTTP, as a user
would, and wait for the index by polling that API with a generous timeout:
the worker's debounce and poll interval decide *when* a dataset shows up,
and timings belong to the benchmark, not to tests. Their fixtures are in
``conftest.py`` beside this file.
"""
