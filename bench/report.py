"""The side-by-side table, the issue's targets, and the JSON record."""
import json

# (label, phase, key, formatter)
ROWS = (
    ("events replayed (copy)", "copy", "events", "int"),
    ("non-2xx answers (copy)", "copy", "failed_requests", "int"),
    ("ack latency p50 (copy)", "copy", "ack_p50_ms", "ms"),
    ("ack latency p99 (copy)", "copy", "ack_p99_ms", "ms"),
    ("events acked/s (copy)", "copy", "events_per_second", "rate"),
    ("S3 requests until searchable", "copy", "s3_requests_until_searchable", "int"),
    ("S3 requests, copy (settled)", "copy", "s3_requests_total", "int"),
    ("registrations (copy)", "copy", "registrations", "int"),
    ("searchable after last ack", "copy", "searchable_after_s", "seconds"),
    ("events replayed (delete)", "delete", "events", "int"),
    ("non-2xx answers (delete)", "delete", "failed_requests", "int"),
    ("ack latency p50 (delete)", "delete", "ack_p50_ms", "ms"),
    ("ack latency p99 (delete)", "delete", "ack_p99_ms", "ms"),
    ("events acked/s (delete)", "delete", "events_per_second", "rate"),
    ("S3 requests, delete (settled)", "delete", "s3_requests_total", "int"),
    ("gone from listing after last ack", "delete", "gone_from_listing_after_s", "seconds"),
    ("gone from search after last ack", "delete", "gone_from_search_after_s", "seconds"),
    ("peak memory, master+workers", None, "peak_memory_mib", "mib"),
    ("tracebacks in dserver log", None, "tracebacks_in_log", "int"),
)


def _format(value, kind):
    if kind == "seconds":
        return "never" if value is None else f"{value:.2f} s"
    if value is None:
        return "n/a"
    return {"int": f"{value}", "ms": f"{value:.1f} ms", "rate": f"{value:.1f}",
            "mib": f"{value:.0f} MiB"}[kind]


def _cell(figures, phase, key, kind):
    if figures is None:
        return "-"
    source = figures[phase] if phase else figures
    return _format(source.get(key), kind)


def table(runs):
    """Plain-text table: one row per figure, one column per plugin."""
    names = [name for name in ("published", "ours") if name in runs]
    header = ["", *[f"{name} ({runs[name]['version']})" for name in names]]
    lines = [header]
    for label, phase, key, kind in ROWS:
        lines.append([label, *[_cell(runs[name], phase, key, kind) for name in names]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = []
    for index, row in enumerate(lines):
        text.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                              for i, cell in enumerate(row)).rstrip())
        if index == 0:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


def targets(runs, debounce):
    """The issue's targets for our plugin, as (description, measured, met)."""
    ours, published = runs.get("ours"), runs.get("published")
    if ours is None:
        return []
    bound = debounce + 2
    checks = []
    if published is not None:
        ratio = ours["copy"]["events_per_second"] / max(published["copy"]["events_per_second"],
                                                        1e-9)
        checks.append(("events acked/s >= 50x published", f"{ratio:.1f}x", ratio >= 50))
    s3 = ours["copy"]["s3_requests_total"]
    checks.append(("S3 requests per copied dataset <= 20", str(s3), s3 <= 20))
    searchable = ours["copy"]["searchable_after_s"]
    checks.append((f"searchable <= debounce + 2 s = {bound:g} s",
                   _format(searchable, "seconds"),
                   searchable is not None and searchable <= bound))
    gone = ours["delete"]["gone_from_search_after_s"]
    checks.append((f"deletion visible in search <= {bound:g} s", _format(gone, "seconds"),
                   gone is not None and gone <= bound))
    return checks


def targets_text(checks):
    return "\n".join(f"  [{'met' if met else 'MISSED'}] {what}: {measured}"
                     for what, measured, met in checks)


def write_json(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
