"""The SLA report as plain text for a terminal (:func:`render_table`): columns aligned by
display width, so CJK unit names line up, and control characters from the journal escaped."""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Sequence
from typing import Final

from gateway.sla.report import SlaReport
from gateway.sla.sections import heading, headline_section, other_sections, stage_sections

__all__ = ["render_table"]

_NOTE_WIDTH: Final = 100


def _printable(text: str) -> str:
    """Journal text made safe for a terminal: control and format characters escaped."""
    return "".join(
        ch if unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"} else f"\\x{ord(ch):02x}"
        for ch in text
    )


def _width(text: str) -> int:
    """Terminal columns: wide and full-width characters (CJK) take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in {"W", "F"} else 1
    return width


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """Columns padded by display width; columns from ``numeric_from`` on are right-aligned."""
    cells = [list(headers), *[[_printable(c) for c in row] for row in rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            parts.append(pad + cell if i >= numeric_from else cell + pad)
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_table(report: SlaReport) -> str:
    """The report as plain text for a terminal (journal text with control characters escaped)."""
    out = list(heading(report))
    sections = [headline_section(report), *stage_sections(report), *other_sections(report)]
    for section in sections:
        out += ["", section.title]
        if section.rows:
            out.append(_text_table(section.headers, section.rows, section.numeric_from))
        if section.note:
            out.append(textwrap.fill(section.note, width=_NOTE_WIDTH))
    out += ["", "NOTES", *(f"- {note}" for note in report.notes)]
    return "\n".join(out) + "\n"
