"""The two dserver environments compared by the benchmark.

Both venvs get the *same* stack, pinned to the versions the project's own
test environment resolves to, so that the plugin is the only difference:

* ``published``: ``dserver-notification-plugin==0.4.3`` from PyPI. It
  declares only ``dservercore>0.18.0``; left alone, pip resolves
  flask-smorest 0.25, with which dservercore 0.22.0 does not import. The
  pins below are what makes it run at all (a documented weakness of 0.4.3).
* ``ours``: this repository, installed non-editable (``pip install <repo>``).

The venvs live under ``bench/.venvs/`` and are reused when their pins are
unchanged; the project is re-installed into ``ours`` on every run so that
the benchmark measures the code in the working tree.
"""
import hashlib
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENVS_DIR = BENCH_DIR / ".venvs"
PUBLISHED_SPEC = "dserver-notification-plugin==0.4.3"

# The shared stack, identical in both venvs.
SHARED_PINS = (
    "dservercore==0.22.0",
    "dserver-search-plugin-mongo==0.4.2",
    "dserver-retrieve-plugin-mongo==0.4.2",
    "Flask==2.3.3",
    "Werkzeug==3.1.9",
    "flask-smorest==0.42.3",
    "apispec==6.10.1",
    "marshmallow==3.26.2",
    "flask-marshmallow==1.2.1",
    "marshmallow-sqlalchemy==1.3.0",
    "Flask-SQLAlchemy==3.1.1",
    "SQLAlchemy==2.1.9",
    "Flask-JWT-Extended==4.7.4",
    "PyJWT==2.15.1",
    "Flask-PyMongo==2.3.0",
    "pymongo==4.20.1",
    "dtoolcore==3.19.0",
    "dtool-s3==0.14.1",
    "boto3==1.44.8",
    "botocore==1.44.8",
    "gunicorn==27.0.1",
)
# Installed next to the plugin in both venvs (the constraints pin them).
SERVER_PACKAGES = ("dservercore", "dserver-search-plugin-mongo",
                   "dserver-retrieve-plugin-mongo", "gunicorn")

PLUGINS = ("published", "ours")


def _run(args, log):
    print("  $ " + " ".join(str(a) for a in args), file=log, flush=True)
    subprocess.run([str(a) for a in args], check=True, stdout=log, stderr=subprocess.STDOUT)


def _pins_digest(plugin):
    text = "\n".join((plugin, PUBLISHED_SPEC, *SHARED_PINS))
    if plugin == "ours":
        text += (REPO_ROOT / "pyproject.toml").read_text()
    return hashlib.sha256(text.encode()).hexdigest()


def venv_python(plugin):
    return VENVS_DIR / plugin / "bin" / "python"


def _install_stack(plugin, venv, log):
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(SHARED_PINS) + "\n")
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "-c", constraints]
    _run([*pip[:4], "--upgrade", "pip"], log)
    # ours with its PostgreSQL driver: the latency benchmark runs it on both databases
    plugin_spec = PUBLISHED_SPEC if plugin == "published" else f"{REPO_ROOT}[postgresql]"
    _run([*pip, plugin_spec, *SERVER_PACKAGES], log)


def _reinstall_project(venv, log):
    """The working tree's plugin, without touching the pinned stack."""
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
          "--force-reinstall", str(REPO_ROOT)], log)


def ensure_venv(plugin, log=sys.stderr):
    """Create (or reuse) the venv for ``plugin``; return its python."""
    venv = VENVS_DIR / plugin
    marker = venv / ".bench-installed"
    digest = _pins_digest(plugin)
    if marker.exists() and marker.read_text() == digest:
        print(f"reusing {venv}", file=log, flush=True)
        if plugin == "ours":
            _reinstall_project(venv, log)
    else:
        print(f"building {venv} (a few minutes the first time)", file=log, flush=True)
        _run([sys.executable, "-m", "venv", "--clear", venv], log)
        _install_stack(plugin, venv, log)
        marker.write_text(digest)
    check_imports(plugin)
    return venv_python(plugin)


def check_imports(plugin):
    """Fail early, with pip's words, if the venv cannot serve dserver."""
    python = venv_python(plugin)
    subprocess.run([str(python), "-m", "pip", "check"], check=True,
                   stdout=subprocess.DEVNULL, cwd=VENVS_DIR)
    code = "import dservercore, flask_smorest, dserver_notification_plugin as p; print(p.__file__)"
    where = subprocess.run([str(python), "-c", code], check=True, capture_output=True,
                           text=True, cwd=VENVS_DIR).stdout.strip()
    if str(REPO_ROOT / "dserver_notification_plugin") in where:
        raise RuntimeError(f"{plugin}: plugin imported from the source tree, not the venv")


def installed_versions(plugin):
    """name -> version of the packages that matter, as installed in the venv."""
    names = ["dserver-notification-plugin", "dservercore", "dserver-search-plugin-mongo",
             "dserver-retrieve-plugin-mongo", "flask", "flask-smorest", "marshmallow",
             "dtool-s3", "gunicorn"]
    code = ("import sys, importlib.metadata as m; "
            "print('\\n'.join(n + '=' + m.version(n) for n in sys.argv[1:]))")
    out = subprocess.run([str(venv_python(plugin)), "-c", code, *names], check=True,
                         capture_output=True, text=True, cwd=VENVS_DIR).stdout
    return dict(line.split("=", 1) for line in out.split())


if __name__ == "__main__":
    for name in sys.argv[1:] or PLUGINS:
        print(name, ensure_venv(name), installed_versions(name))
