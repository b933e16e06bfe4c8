"""``python -m demo`` (``make demo``): watch a dataset appear in dserver's search.

Starts everything on 127.0.0.1, copies a sample dataset into an S3 bucket
with dtool, shows it turning up in search, deletes it, shows it gone, and
stops everything it started, also on Ctrl-C or SIGTERM.
"""
import argparse
import signal
import sys
import time

from .console import Console
from .sample import load_sample

EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: leave through the ``finally`` that stops the servers."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Start S3 (moto), a Mongo-wire server and dserver with the "
                    "notification plugin on loopback; copy a dataset into the bucket "
                    "and watch it turn up in search, then delete it and watch it go.")
    parser.add_argument("--items", type=int, default=0, metavar="N",
                        help="add N generated files to the sample dataset (default 0)")
    parser.add_argument("--debounce", type=float, default=2.0, metavar="SECONDS",
                        help="DSERVER_NOTIFY_DEBOUNCE_SECONDS for the demo's dserver "
                             "(default 2, the plugin's default)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the servers up at the end until Ctrl-C, and show "
                             "how to talk to them")
    parser.add_argument("--no-color", action="store_true", help="plain text output")
    args = parser.parse_args(argv)
    if args.items < 0:
        parser.error("--items must be 0 or more")
    return args


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def _while_stopping(signum, frame):
    try:
        print("\n   (still stopping the servers; one moment)", flush=True)
    except OSError:
        pass


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install_signal_handlers(handler):
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def main(argv=None):
    args = parse_args(argv)
    say = Console(color=False if args.no_color else None)
    install_signal_handlers(_raise_interrupted)
    # Imported here so that --help works even before the harness is importable.
    from .stack import DemoStack
    from .story import Story

    stack = DemoStack(say, debounce_seconds=args.debounce)
    story = None
    code = 0
    say.heading("Starting the servers (all on 127.0.0.1)")
    try:
        stack.start()
        story = Story(say, stack, load_sample(args.items))
        story.run()
        say.heading("Done")
        say.plain("   The dataset turned up in search without anyone calling dserver: "
                  "S3's notifications did it.")
        if args.keep_running:
            keep_running(say, stack)
    except Interrupted as exc:
        say.done_waiting()
        say.failure(f"interrupted ({exc}); stopping")
        code = EXIT_INTERRUPTED
    except Exception as exc:
        say.done_waiting()
        report_failure(say, stack, exc)
        code = 1
    finally:
        install_signal_handlers(_while_stopping)
        if story is not None:
            story.close()
        say.heading("Stopping everything the demo started")
        stack.stop()
        say.event("all servers stopped, temporary files removed")
        install_signal_handlers(signal.SIG_DFL)
    return code


def report_failure(say, stack, exc):
    say.failure(f"the demo failed: {type(exc).__name__}: {exc}")
    for name, tail in stack.log_tails():
        say.plain(f"--- last lines of the {name} log ---")
        say.plain(tail)


def keep_running(say, stack):
    token_file = stack.workdir / "admin.jwt"
    token_file.write_text(stack.admin_token)
    say.heading("Servers keep running; Ctrl-C stops them")
    say.table([
        ("dserver", stack.dserver.url),
        ("S3 (moto)", stack.moto.endpoint),
        ("bucket", f"{stack.bucket}  (base URI {stack.base_uri})"),
        ("Mongo", stack.mongo.uri),
        ("admin JWT", str(token_file)),
    ])
    auth = f"-H \"Authorization: Bearer $(cat {token_file})\""
    say.explain("Search, as admin; and the plugin's status:")
    say.plain(f"   curl -s {auth} -H 'Content-Type: application/json' -d '{{}}' "
              f"{stack.dserver.url}/uris")
    say.plain(f"   curl -s {auth} {stack.dserver.url}/webhook/status")
    say.explain("Copy a dataset of your own into the bucket, then search again "
                "(dtool-s3 reads these settings):")
    for name, value in stack.s3_env.items():
        say.plain(f"   export {name}={value}")
    say.plain(f"   {sys.executable} -c \"import dtoolcore, sys; "
              f"print(dtoolcore.copy(sys.argv[1], '{stack.base_uri}'))\" file:///path/to/dataset")
    say.explain("(or `dtool cp <dataset> " + stack.base_uri + "` with the dtool command "
                "line: pip install dtool-create)")
    try:
        while True:
            time.sleep(3600)
    except Interrupted:
        say.plain("")  # Ctrl-C is the way out here, not a failure


if __name__ == "__main__":
    sys.exit(main())
