"""One host of ``python -m bench burst``: a dserver process that only syncs.

Run as ``python -m bench.burst_host`` with a dserver's environment
(:func:`devstack.dserver.dserver_env`): it creates the app as gunicorn would
(``dservercore.create_app()``, configuration from the environment), prints
``ready``, waits for a line on stdin (so that the benchmark starts every
host's clock at once, after their imports), starts the notification worker
with its ``DSERVER_NOTIFY_SYNC_THREADS`` threads and syncs until SIGTERM, then stops the worker, which
flushes this process's counts (registrations, S3 requests) to the shared
counters table. Several of these on one database are the several hosts of
the issue; the benchmark process itself only posts notifications and looks.

``--profile FILE``: profile every thread with yappi (the ``bench`` extra)
from the start of the worker to SIGTERM, and write the functions that took
the most time (``--clock wall`` or ``cpu``), summed over threads, to FILE.
"""
import argparse
import signal
import sys
import threading


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.burst_host")
    parser.add_argument("--profile", help="write a yappi profile here")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="what the profile measures (default wall)")
    return parser.parse_args(argv)


def write_profile(path, clock, top=60):
    """The functions with the most time, inclusive and exclusive, all threads."""
    import yappi
    stats = yappi.get_func_stats()
    with open(path, "w") as out:
        for key, title in (("ttot", "inclusive"), ("tsub", "exclusive")):
            stats.sort(key, "desc")
            out.write(f"== by {title} {clock} time (seconds, summed over threads) ==\n")
            for stat in list(stats)[:top]:
                out.write(f"{stat.ttot:9.2f} {stat.tsub:9.2f} {stat.ncall:8d}  "
                          f"{stat.module}:{stat.lineno} {stat.name}\n")


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    import dservercore
    app = dservercore.create_app()
    ext = app.extensions["dserver_notification"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    sys.stdin.readline()  # the benchmark's go
    if options.profile:
        import yappi
        yappi.set_clock_type(options.clock)
        yappi.start(profile_threads=True)
    ext.worker.start()
    stop.wait()
    ext.stop_background()
    if options.profile:
        yappi.stop()
        write_profile(options.profile, options.clock)


if __name__ == "__main__":
    main()
