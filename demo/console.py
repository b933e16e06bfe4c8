"""What the demo prints: explanations, a timeline, and a spinner while it waits.

Every timeline line starts with the seconds since the demo started, so a
newcomer can see how long each step took. The spinner (one line redrawn in
place) appears only when stdout is a terminal; piped output, as in the
test, gets the plain lines alone.
"""
import os
import shutil
import sys
import threading
import time

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
STYLES = {"bold": "1", "dim": "2", "green": "32", "yellow": "33", "cyan": "36", "red": "31"}


class Console:
    """Writes to one stream; the clock starts when the Console is made."""

    def __init__(self, stream=None, color=None):
        self.stream = stream or sys.stdout  # None once writing failed
        self.interactive = self.stream.isatty()
        if color is None:
            color = self.interactive and "NO_COLOR" not in os.environ
        self.color = color
        self.started_wall = time.time()  # the servers' clocks are wall clocks
        self._started = time.monotonic()
        self._status_line = ""
        self._frame = 0
        self._lock = threading.Lock()

    # time -----------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def since_start(self, wall_time: float) -> float:
        """Seconds since the start for a wall-clock time (e.g. from the server)."""
        return wall_time - self.started_wall

    # styling --------------------------------------------------------
    def style(self, text: str, *names: str) -> str:
        if not self.color or not names:
            return text
        codes = ";".join(STYLES[name] for name in names)
        return f"\x1b[{codes}m{text}\x1b[0m"

    # output ---------------------------------------------------------
    def _write_line(self, text: str) -> None:
        with self._lock:
            self._guarded(lambda: (self._erase_status(), self.stream.write(text + "\n"),
                                   self._draw_status()))

    def _guarded(self, write) -> None:
        """Write and flush; a closed stream (``| head``, closed terminal) must
        not stop the demo from stopping its servers, so it only ends output."""
        if self.stream is None:
            return
        try:
            write()
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def heading(self, title: str) -> None:
        self._write_line("")
        self._write_line(self.style(f"== {title}", "bold", "cyan"))

    def explain(self, text: str) -> None:
        """A short line that says what is going on and why."""
        self._write_line(self.style(f"   {text}", "dim"))

    def plain(self, text: str = "") -> None:
        self._write_line(text)

    def event(self, text: str, at: float = None, style: str = None) -> None:
        """A timeline line; ``at`` is seconds since start (default: now)."""
        at = self.elapsed() if at is None else at
        stamp = self.style(f"{at:+8.2f}s", "yellow")
        self._write_line(f"{stamp}  {self.style(text, style) if style else text}")

    def success(self, text: str, at: float = None) -> None:
        self.event(text, at=at, style="green")

    def failure(self, text: str) -> None:
        self._write_line(self.style(f"!! {text}", "red", "bold"))

    def table(self, rows) -> None:
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self._write_line(f"   {self.style(name.ljust(width), 'bold')}  {value}")

    # spinner --------------------------------------------------------
    def waiting(self, text: str) -> None:
        """Show (or update) the one-line progress display; terminals only."""
        if not self.interactive:
            return
        with self._lock:
            self._frame = (self._frame + 1) % len(SPINNER_FRAMES)
            columns = shutil.get_terminal_size((80, 24)).columns
            line = f"{SPINNER_FRAMES[self._frame]} {self.elapsed():6.1f}s  {text}"
            self._guarded(self._erase_status)
            self._status_line = line[:max(10, columns - 1)]
            self._guarded(self._draw_status)

    def done_waiting(self) -> None:
        if not self.interactive:
            return
        with self._lock:
            self._guarded(self._erase_status)
            self._status_line = ""

    def _erase_status(self) -> None:
        if self._status_line:
            self.stream.write("\r\x1b[2K")

    def _draw_status(self) -> None:
        if self._status_line:
            self.stream.write(self.style(self._status_line, "cyan"))
