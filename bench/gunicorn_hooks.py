"""gunicorn config file used for both plugins: counts index writes.

The published plugin logs nothing per registration, so log lines cannot be
compared. Instead both servers get the same instrumentation: in every
worker, right after the fork and before the app (and so any plugin) is
imported, ``dservercore.utils.register_dataset`` and ``delete_dataset`` are
wrapped to append one line per *successful* call to the file named by
``BENCH_CALL_LOG``. Both plugins import these functions from
``dservercore.utils`` at import time, so they pick up the wrappers; no
plugin code is touched. (The published plugin deletes SQL rows directly
and never calls ``delete_dataset``; its deletions are therefore not in
this log.) Lines are shorter than PIPE_BUF and written with O_APPEND, so
the workers' lines do not interleave.
"""
import functools
import os


def _counted(function, label, log_path):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        line = f"{label} {os.getpid()}\n".encode()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return result
    return wrapper


def post_fork(server, worker):
    log_path = os.environ.get("BENCH_CALL_LOG")
    if not log_path:
        return
    import dservercore.utils as utils
    utils.register_dataset = _counted(utils.register_dataset, "register", log_path)
    utils.delete_dataset = _counted(utils.delete_dataset, "delete", log_path)
