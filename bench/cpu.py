"""Where the CPU of a benchmark run goes: per role of process, and the machine's.

A role is a few processes (a host, moto, the Mongo-wire server, PostgreSQL's
postmaster) with their children, read through psutil at the start and at
the end of a run. A child that ended during the run (a PostgreSQL backend
of a closed connection) is not counted: the figures are a lower bound.
"""
import os

import psutil


def _process_times(pid, children=True):
    """``{pid: cpu seconds}`` of a process and (unless not asked) its living children."""
    try:
        root = psutil.Process(pid)
        processes = [root, *(root.children(recursive=True) if children else ())]
    except psutil.Error:
        return {}
    times = {}
    for process in processes:
        try:
            spent = process.cpu_times()
            times[process.pid] = spent.user + spent.system
        except psutil.Error:
            pass
    return times


def snapshot(roles, alone=()):
    """``roles``: ``{name: [pid, ...]}``. What each has used so far, and the
    machine. The roles named in ``alone`` are counted without their children
    (the benchmark's process is the parent of every server it started)."""
    return {"roles": {name: {p: t for pid in pids
                             for p, t in _process_times(pid, name not in alone).items()}
                      for name, pids in roles.items()},
            "machine": psutil.cpu_times()}


def spent(before, after, per=1):
    """CPU seconds each role used between two snapshots (divided by ``per``),
    and how busy the machine's CPUs were meanwhile (0 to 1)."""
    figures = {}
    for name, times in after["roles"].items():
        start = before["roles"].get(name, {})
        used = sum(t - start.get(pid, 0.0) for pid, t in times.items())
        figures[name] = round(used / per, 4)
    total = sum(after["machine"]) - sum(before["machine"])
    idle = (after["machine"].idle - before["machine"].idle) + \
        (getattr(after["machine"], "iowait", 0) - getattr(before["machine"], "iowait", 0))
    return figures, round(1 - idle / total, 3) if total > 0 else None


#: The role counted without its children: the benchmark is the parent of
#: every server it started.
ALONE = ("benchmark",)


def server_roles(host_pids, mongo, moto, postgres):
    """The roles of a benchmark run: its hosts, the servers they use, itself."""
    return {"hosts": list(host_pids), "moto": [moto.proc.pid], "mongo": [mongo.proc.pid],
            "postgresql": [postgres.server_pid()], "benchmark": [os.getpid()]}
