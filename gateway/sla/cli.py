"""``fieldlink sla`` (:func:`run_sla`): open the journal read-only, build the report, write it as
a table, JSON or HTML to stdout or a file. The only part of the report that prints, and that
decides an exit status."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Final

from gateway.config import Config, SlaConfig
from gateway.errors import FieldlinkError
from gateway.model import utc_now
from gateway.sla.as_html import render_html
from gateway.sla.as_json import report_to_json
from gateway.sla.compute import build_report
from gateway.sla.report import SlaReport
from gateway.sla.since import parse_since
from gateway.sla.table import render_table

__all__ = ["FORMATS", "JournalUnreadable", "run_sla"]

FORMATS: Final = ("table", "json", "html")


class JournalUnreadable(FieldlinkError):
    """The journal is missing or cannot be read."""


def _read_report(path: Path, sla: SlaConfig, since: datetime | None, now: datetime) -> SlaReport:
    if not path.is_file():
        raise JournalUnreadable(f"no journal at {path}")
    # Read-only: the report never writes. as_uri() percent-encodes, so "?" or "#" in data_dir
    # stay part of the path. A stopped gateway leaves no -wal/-shm: a plain read-only open would
    # create them, owned by whoever runs the report (root, say), and the gateway's own user might
    # then fail to open its journal. So then the file is read as immutable, which creates
    # nothing; a gateway starting meanwhile writes to its WAL, not to the file being read.
    sidecars = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    query = "mode=ro" if any(p.exists() for p in sidecars) else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"cannot open the journal {path}: {exc}") from exc
    try:
        return build_report(conn, sla, since=since, now=now)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"cannot read the journal {path}: {exc}") from exc
    finally:
        conn.close()


def run_sla(
    config: Config,
    *,
    since: str | None,
    fmt: str,
    output: Path | None,
    now: datetime | None = None,
) -> int:
    """``fieldlink sla``: 0 when written, 1 when the journal cannot be read or the output
    written, 2 on a bad ``since`` or format. Messages go to stderr."""
    now = now or utc_now()
    if fmt not in FORMATS:
        print(f"fieldlink sla: unknown format {fmt!r}; use table, json or html", file=sys.stderr)
        return 2
    try:
        since_at = parse_since(since, now) if since is not None else None
    except ValueError as exc:
        print(f"fieldlink sla: {exc}", file=sys.stderr)
        return 2
    try:
        report = _read_report(config.gateway.data_dir / "journal.sqlite", config.sla, since_at, now)
        if fmt == "json":
            text = json.dumps(report_to_json(report), ensure_ascii=False, indent=2) + "\n"
        else:
            text = render_html(report) if fmt == "html" else render_table(report)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    except (JournalUnreadable, OSError) as exc:
        print(f"fieldlink sla: {exc}", file=sys.stderr)
        return 1
    return 0
