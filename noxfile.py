"""The test matrix: every supported dservercore, and the fast tier on every Python.

Why nox rather than tox: a leg here is a few steps of Python (install the
next dservercore's wheel *before* the plugin, fail loudly when that wheel is
absent, check that the resolved stack is the one the leg claims), which is a
plain function in nox and a plugin or shell escapes in tox.

Sessions (``nox -l``):

* ``default``: dservercore 0.22.0 from PyPI with its Flask 2.3 / marshmallow 3
  stack; the whole suite. ``make test`` runs the same leg in ``.venv``.
* ``next``: the next dservercore from its wheel (Flask 3, marshmallow 4);
  the whole suite. The wheel is ``$DSERVER_NEXT_WHEEL`` (a file, or a
  directory holding one ``dservercore-*.whl``), by default
  ``/work/shared/wheels``; without it the session fails and says so.
* ``fast-3.10`` ... ``fast-3.13``: the unit tier on each Python.
* ``install-next``: ``pip install .`` into a venv that holds the next
  dservercore keeps it (and Flask 3); ``make check-install`` runs it.

Arguments after ``--`` go to pytest (``nox -s next -- -m unit``); for ``fast``
they come after ``-m unit``.
"""
import glob
import os
from pathlib import Path

import nox

NEXT_WHEEL_VARIABLE = "DSERVER_NEXT_WHEEL"
NEXT_WHEEL_DEFAULT = "/work/shared/wheels"
FAST_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# pyenv's interpreters, where they are not on PATH (these machines: /root/.pyenv)
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))

nox.options.sessions = ["default"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True  # a missing Python fails, never skips


def _put_pyenv_pythons_on_path():
    """So that nox finds python3.10 ... python3.13 by name."""
    found = sorted(glob.glob(str(PYENV_ROOT / "versions" / "3.*" / "bin")))
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *found])


_put_pyenv_pythons_on_path()


def next_wheel(session):
    """The next dservercore's wheel, or the session fails saying where it looked."""
    where = Path(os.environ.get(NEXT_WHEEL_VARIABLE) or NEXT_WHEEL_DEFAULT)
    wheels = sorted(where.glob("dservercore-*.whl")) if where.is_dir() else \
        [where] if where.is_file() else []
    if len(wheels) != 1:
        session.error(f"NEXT LEG NOT RUN: no single dservercore wheel at {where} "
                      f"(found {len(wheels)}); set {NEXT_WHEEL_VARIABLE} to the wheel "
                      "of the next dservercore")
    return str(wheels[0])


def expect_stack(session, **majors):
    """Fail unless the installed packages are at these versions (prefixes).

    A leg that silently resolved to another stack would test the wrong thing.
    """
    checks = "; ".join(
        f"v = metadata.version({name!r}); assert v.startswith({prefix!r}), "
        f"'{name} ' + v + ' is not {prefix}*'"
        for name, prefix in majors.items())
    session.run("python", "-c", f"from importlib import metadata; {checks}")
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)


# The whole suite in two pytest-xdist processes, a module to each at a time,
# as `make test` runs it (docs/testing.rst); `-- -n 0 ...` for one process.
WHOLE_SUITE = ["-n", "2", "--dist", "loadfile", "--durations=25"]


def pytest_args(session, default):
    return session.posargs or default


@nox.session(python="3.11")
def default(session):
    """dservercore 0.22.0 (PyPI), Flask 2.3, marshmallow 3: the whole suite."""
    session.install("dservercore==0.22.0", "-e", ".[test]")
    expect_stack(session, dservercore="0.22.0", flask="2.3.", marshmallow="3.")
    session.run("python", "-m", "pytest", *pytest_args(session, WHOLE_SUITE))


@nox.session(python="3.11")
def next(session):  # noqa: A001 (the leg's name)
    """The next dservercore (wheel), Flask 3, marshmallow 4: the whole suite.

    The wheel goes in first and the plugin after it with pip's resolver, as
    into a dserver built on it: nothing may be downgraded.
    """
    session.install(next_wheel(session))
    session.install("-e", ".[test]")
    expect_stack(session, dservercore="0.23.", flask="3.", marshmallow="4.")
    session.run("python", "-m", "pytest", *pytest_args(session, WHOLE_SUITE))


@nox.session(name="fast", python=FAST_PYTHONS)
def fast(session):
    """The unit tier on each supported Python."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "unit", *session.posargs)


KEPT = ("dservercore", "flask", "marshmallow", "flask-smorest", "werkzeug")


@nox.session(name="install-next", python="3.11", reuse_venv=False)
def install_next(session):
    """``pip install`` of the plugin into a dserver built on the next
    dservercore keeps that dservercore and its Flask 3 stack."""
    session.install(next_wheel(session))
    before = installed_versions(session)
    session.install(".", "dserver-search-plugin-mongo", "dserver-retrieve-plugin-mongo")
    after = installed_versions(session)
    changed = {name: (before[name], after.get(name)) for name in KEPT
               if before.get(name) != after.get(name)}
    if changed:
        session.error(f"installing the plugin changed the dserver's stack: {changed}")
    session.run("python", "-m", "pip", "check")
    session.log("kept: " + ", ".join(f"{name} {after[name]}" for name in KEPT if name in after))


def installed_versions(session):
    """{lower-case name: version} of the session's venv."""
    out = session.run("python", "-c",
                      "from importlib import metadata\n"
                      "for d in metadata.distributions():\n"
                      "    print(d.metadata['Name'].lower(), d.version)",
                      silent=True)
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
