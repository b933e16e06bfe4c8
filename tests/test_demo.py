"""`make demo` end to end: `python -m demo` as a newcomer would run it.

Runs the demo as a subprocess (real moto, nx-27017, gunicorn dserver), then
checks its exit code, that its output tells the story in order, and that
it left no server behind. Its timeline, fed by the plugin's status route,
is also checked on its own against answers that come late.
"""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo.console import Console
from demo.watch import SyncTimeline

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
    # in the order it happened: the sync, then search showing what it did
    assert output.index("copy started") < output.index("sync done: dataset registered") < found
    assert found < output.index("sync done: dataset deleted from the index") < gone
    assert "tags     demo, weather" in output
    assert "all servers stopped" in output
    assert "\x1b[" not in output  # --no-color and not a terminal: plain text
    assert servers_still_running(output) == []


def status_answer(accepted=0, **outcomes):
    """A ``GET /webhook/status`` body with these totals (the rest 0)."""
    return {"events": {"total": {"received": accepted, "accepted": accepted, "ignored": 0}},
            "sync": {"total": outcomes},
            "inbox": {"pending": 0, "processing": 0, "failed": 0, "done": 1, "dead": 0}}


class StatusAnswers:
    """A stand-in for the demo's DserverClient: status answers in turn."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def status(self):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_timeline_tells_every_sync_even_when_it_looks_late():
    """Between two looks the dataset was registered and then synced once more
    (a late notification): the story still says it was registered."""
    stream = io.StringIO()
    client = StatusAnswers(status_answer(),
                           status_answer(accepted=7, registered=1, unchanged=1))
    timeline = SyncTimeline(Console(stream, color=False), client)
    timeline.begin_scene()
    timeline.update(force=True)
    output = stream.getvalue()
    assert "first notifications accepted (7 so far)" in output
    assert "sync done: dataset registered in dserver's index" in output
    assert "sync done: the index already matched S3" in output
    assert timeline.grown("registered") == 1 and timeline.grown("accepted") == 7


def test_timeline_tells_the_lead_up_to_what_search_showed_first():
    """Search showed the dataset at +5 s; the counters told of its sync only
    later. The sync is told first, stamped +5 s, with the proto look before
    it; a later sync waits for the next update."""
    stream = io.StringIO()
    client = StatusAnswers(status_answer(),
                           status_answer(accepted=7, proto=1, registered=1, unchanged=1))
    timeline = SyncTimeline(Console(stream, color=False), client)
    timeline.begin_scene()
    timeline.fetch(force=True)
    assert stream.getvalue() == ""  # fetching alone prints nothing
    timeline.tell_lead_up("registered", at=5.0)
    lines = stream.getvalue().splitlines()
    assert [line.strip().split("  ", 1) for line in lines] == [
        ["+5.00s", "first notifications accepted (7 so far): the dataset waits in "
                      "the plugin's inbox"],
        ["+5.00s", "sync done: still a proto-dataset (copy running); waiting for more events"],
        ["+5.00s", "sync done: dataset registered in dserver's index"]]
    timeline.update(force=True)
    later = stream.getvalue().splitlines()[len(lines):]
    assert [line.strip().split("  ", 1)[1] for line in later] == [
        "sync done: the index already matched S3"]


def test_timeline_counts_from_the_start_of_each_scene():
    stream = io.StringIO()
    client = StatusAnswers(status_answer(accepted=7, registered=1),
                           status_answer(accepted=13, registered=1, deleted=1))
    timeline = SyncTimeline(Console(stream, color=False), client)
    timeline.begin_scene()  # the first answer: counts of an earlier scene
    assert timeline.grown("registered") == 0
    timeline.update(force=True)
    assert timeline.grown("deleted") == 1 and timeline.grown("accepted") == 6
    assert "dataset deleted from the index" in stream.getvalue()


def test_demo_watches_from_outside():
    """The demo reads what an operator can: HTTP, not the plugin's tables."""
    for path in (REPO / "demo").glob("*.py"):
        assert "dserver_notification_plugin" not in path.read_text(), path
