"""Render the table of settings declared in ``config.Settings``.

``dserver_notification_plugin/config.py`` is the one source of truth for
setting names, defaults and meanings. docs/configuration.rst holds the table
rendered here between two markers, committed so that it reads on GitHub
too; a setting added to config.py without an example here fails loudly
instead of going undocumented, and a stale copy fails the docs build and
CI's check.

Usage::

    python docs/settings_table.py            # print the table
    python docs/settings_table.py --write    # refresh docs/configuration.rst
    python docs/settings_table.py --check    # exit 1 if its table is stale

``--write FILE`` and ``--check FILE`` work on any file with the markers.

config.py is loaded by file path, not through the package, so rendering
needs neither dservercore nor an installed plugin.
"""
import argparse
import importlib.util
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_PY = ROOT / "dserver_notification_plugin" / "config.py"
TABLE_PAGE = ROOT / "docs" / "configuration.rst"
START = ".. settings-table-start"
END = ".. settings-table-end"

# One example per setting, as a user would write it. Kept here, not in
# config.py, because examples are documentation, not behaviour.
EXAMPLES = {
    "BUCKET_TO_BASE_URI": '{"my-bucket": "s3://my-bucket"}',
    "ALLOW_ACCESS_FROM": "10.0.5.0/24,2001:db8:5::/64",
    "TRUSTED_PROXIES": "127.0.0.1,::1",
    "FORWARDED_HEADER": "x-real-ip",
    "AUTH_TOKEN": "new-token,old-token",
    "BASIC_AUTH": "minio:s3cret,storagegrid:0ther",
    "SNS_TOPICS": "arn:aws:sns:eu-central-1:123456789012:dserver-events",
    "SNS_HOSTS": "sns.eu-central-1.amazonaws.com,http://127.0.0.1:5123",
    "SNS_VERIFY": "off",
    "REQUIRE_SNS": "on",
    "SNS_TIMEOUT_SECONDS": "10",
    "MAX_BODY_BYTES": "4194304",
    "MAX_RECORDS": "100",
    "MAX_PENDING": "20000",
    "DONE_RETENTION_SECONDS": "86400",
    "DEBOUNCE_SECONDS": "5",
    "MAX_DELAY_SECONDS": "60",
    "EDIT_DELAY_SECONDS": "0.2",
    "MAX_ATTEMPTS": "12",
    "RETRY_BASE_SECONDS": "2",
    "RETRY_MAX_SECONDS": "600",
    "CLAIM_TIMEOUT_SECONDS": "600",
    "HEARTBEAT_SECONDS": "5",
    "POLL_SECONDS": "1",
    "IDLE_SECONDS": "30",
    "SYNC_THREADS": "8",
    "WORKER": "off",
    "SQS_QUEUE_URLS": "https://sqs.eu-central-1.amazonaws.com/123456789012/dserver-events",
    "REJECT_LOG_INTERVAL_SECONDS": "300",
    "RECONCILE_INTERVAL_SECONDS": "21600",
    "RECONCILE_MAX_RPS": "50",
    "RECONCILE_LEASE_SECONDS": "120",
    "RECONCILE_MAX_REMOVALS": "25%",
}


def load_config_module():
    spec = importlib.util.spec_from_file_location("_notify_config", CONFIG_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _literal(text):
    return f"``{text}``" if text else "(empty)"


def _meaning(text, secret):
    # config.py writes commands in single backticks (Markdown habit);
    # in reStructuredText those must be double to render as code.
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)
    if secret:
        text += " Secret: obfuscated in ``/config/info`` and never logged."
    return text


def render_table():
    """The settings as an RST list-table; raises if an example is missing."""
    config = load_config_module()
    declared = [meta for _, meta in config.declared_settings()]
    missing = sorted({meta["short"] for meta in declared} - set(EXAMPLES))
    if missing:
        raise SystemExit(f"settings_table.py: no example for {', '.join(missing)}")
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 25 15 25 35",
        "",
        "   * - Setting",
        "     - Default",
        "     - Example",
        "     - Meaning",
    ]
    for meta in declared:
        lines += [
            f"   * - ``{config.env_name(meta)}``",
            f"     - {_literal(meta['default'])}",
            f"     - {_literal(EXAMPLES[meta['short']])}",
            f"     - {_meaning(meta['meaning'], meta['secret'])}",
        ]
    return "\n".join(lines) + "\n"


def _replace_between_markers(text, table):
    start, end = text.index(START), text.index(END)
    head = text[:start + len(START)]
    return head + "\n\n" + table + "\n" + text[end:]


def wanted_text(path):
    """(the file's text now, its text with a freshly rendered table)."""
    current = path.read_text(encoding="utf-8")
    return current, _replace_between_markers(current, render_table())


def stale_message(path=TABLE_PAGE):
    """Why the table in ``path`` is stale, or None when it is current."""
    current, wanted = wanted_text(path)
    if current == wanted:
        return None
    shown = os.path.relpath(path)
    return (f"{shown}: settings table is stale; run "
            f"python docs/settings_table.py --write {shown}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    for flag, action in (("--write", "refresh"), ("--check", "check")):
        group.add_argument(flag, metavar="FILE", type=pathlib.Path, nargs="?",
                           const=TABLE_PAGE,
                           help=f"{action} the table in FILE (default docs/configuration.rst)")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(wanted_text(args.write)[1], encoding="utf-8")
        return 0
    if args.check:
        message = stale_message(args.check)
        if message:
            print(message, file=sys.stderr)
        return 1 if message else 0
    sys.stdout.write(render_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
