"""`make demo` end to end: `python -m demo` as a newcomer would run it.

Runs the demo as a subprocess (real moto, nx-27017, gunicorn dserver), then
checks its exit code, that its output tells the story in order, and that
it left no server behind.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
URI = re.compile(r"s3://demo[0-9a-f]{8}/[0-9a-f-]{36}")
SERVER_COMMANDS = ("moto_server", "devstack.mongo", "gunicorn")


def run_demo(*args, timeout=240):
    env = dict(os.environ, NO_COLOR="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "demo", "--no-color", *args],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def servers_still_running(output):
    """Servers whose ports the demo printed and that still run.

    Matching on ports (not on process names) keeps servers of parallel test
    runs out of the picture.
    """
    ports = set(re.findall(r"127\.0\.0\.1:(\d+)", output))
    table = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in table.splitlines()
            if any(cmd in line for cmd in SERVER_COMMANDS)
            and any(re.search(rf"\b{port}\b", line) for port in ports)]


@pytest.mark.e2e
def test_demo_shows_the_dataset_found_then_gone():
    result = run_demo()
    output = result.stdout
    assert result.returncode == 0, output + result.stderr

    uri = URI.search(output).group(0)
    found = output.index("found in search")
    gone = output.index("gone from search")
    assert output.index("copy started") < found < output.index(f"URI      {uri}") < gone
    assert "sync done: dataset registered" in output
    assert "sync done: dataset deleted from the index" in output
    assert "tags     demo, weather" in output
    assert "all servers stopped" in output
    assert "\x1b[" not in output  # --no-color and not a terminal: plain text
    assert servers_still_running(output) == []
