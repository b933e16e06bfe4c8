# The two commands of README.rst: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
NOX := $(VENV)/bin/nox
# Options for pytest in `make test`, e.g. PYTEST_ARGS="-k sqs -x".
PYTEST_ARGS ?=
# pytest-xdist processes for `make test`, a module to each at a time (most
# tests wait on servers, so two gain even on two cores; docs/testing.rst);
# PYTEST_WORKERS=0 runs the tests in one process.
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-fast test-next test-pythons docs bench check-install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $@

install: $(VENV)/.installed

## Main job: a dataset lands in a bucket and turns up in search.
demo: install
	$(PY) -m demo

## Every test, against real servers the tests start themselves: the default
## leg (dservercore 0.22.0, Flask 2.3, marshmallow 3; noxfile.py has the rest).
## The 25 slowest are listed at the end (docs/testing.rst).
test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

## The unit tier: no server, about a minute.
test-fast: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

## The next dservercore (its wheel: DSERVER_NEXT_WHEEL, default /work/shared/wheels).
test-next: install
	$(NOX) -s next

## The unit tier on Python 3.10 to 3.13 (pyenv's interpreters).
test-pythons: install
	$(NOX) -s fast

docs: install
	$(VENV)/bin/sphinx-build -W -q -b html docs docs/_build/html

## Benchmarks (not part of the tests): latency, claim throughput and a burst of
## copies on SQLite and PostgreSQL, side by side with the published plugin, and
## a reconcile pass over a mix of datasets (large ones of 1,500 items: past one
## page of 1,000 keys a dataset's size no longer changes the requests).
bench: install
	$(PY) -m bench latency
	$(PY) -m bench claims
	$(PY) -m bench burst
	$(PY) -m bench
	$(PY) -m bench reconcile --large-items 1500
	$(PY) -m bench first-index
	$(PY) -m bench load

## A fresh venv with `pip install .` must resolve to a set that imports and runs;
## installed into a dserver on the next dservercore, it must keep that one.
check-install:
	rm -rf build/check-venv
	$(PYTHON) -m venv build/check-venv
	build/check-venv/bin/python -m pip install --quiet --upgrade pip
	build/check-venv/bin/python -m pip install --quiet . dserver-search-plugin-mongo dserver-retrieve-plugin-mongo
	build/check-venv/bin/python -m pip check
	cd build && check-venv/bin/python -c "import flask_smorest, dservercore, dserver_notification_plugin; print('imports ok')"
	$(NOX) -s install-next

clean:
	rm -rf $(VENV) build docs/_build .nox
