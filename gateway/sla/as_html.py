"""The SLA report as one self-contained HTML page (:func:`render_html`): inline CSS and inline
SVG charts (the cumulative distribution of both latency measures per stage, the target as a red
vertical line), no external reference of any kind, so it opens offline and can be mailed as
one file. Journal text is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Final

from gateway.sla.report import SlaReport, StageReport
from gateway.sla.sections import (
    Section,
    format_duration,
    heading,
    headline_section,
    other_sections,
    stage_sections,
)

__all__ = ["render_html"]

_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", sans-serif;
       margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; }
th { background: #f2f2f2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: .9em; font-weight: 600; }
.warn { color: #a33; font-weight: 600; } .ok { color: #1a7f37; font-weight: 600; }
.muted { color: #666; font-size: .9em; }
svg text { font-family: inherit; font-size: 11px; fill: #333; }
"""

_SVG_W: Final = 520
_SVG_H: Final = 230
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 44, 14, 14, 40
_CURVE_POINTS: Final = 400
_E2E_COLOR: Final = "#1f6fb4"
_GW_COLOR: Final = "#d9822b"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_cell(section: Section, i: int, cell: str) -> str:
    classes = ["n"] if i >= section.numeric_from else []
    if i == section.verdict_column and cell in {"yes", "no"}:
        classes.append("ok" if cell == "yes" else "warn")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{_esc(cell)}</td>"


def _html_section(section: Section) -> str:
    note = f'<p class="muted">{_esc(section.note)}</p>' if section.note else ""
    if not section.rows:
        return '<p class="muted">none</p>' + note
    head = "".join(f"<th>{_esc(h)}</th>" for h in section.headers)
    body = [
        "<tr>" + "".join(_html_cell(section, i, c) for i, c in enumerate(row)) + "</tr>"
        for row in section.rows
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"


def _curve(values: Sequence[float]) -> list[tuple[float, float]]:
    """Points of the empirical CDF as a step line, at most ``_CURVE_POINTS`` ranks."""
    n = len(values)
    k = min(n, _CURVE_POINTS)
    points: list[tuple[float, float]] = []
    previous_y = 0.0
    for j in range(1, k + 1):
        rank = math.ceil(j * n / k)
        x, y = values[rank - 1], rank / n
        points += [(x, previous_y), (x, y)]
        previous_y = y
    return points


_TICK_STEPS_S: Final = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)  # fmt: skip


def _ticks(x_min: float, x_max: float, most: int = 6) -> list[float]:
    """Round tick positions (seconds, minutes, hours, days) across ``[x_min, x_max]``."""
    span = x_max - x_min
    step = next((s for s in _TICK_STEPS_S if span / s <= most), span / most)
    first = math.ceil(x_min / step)
    return [i * step for i in range(first, math.floor(x_max / step) + 1)]


def _cdf_svg(stage: StageReport) -> str:
    e2e, gw = stage.end_to_end.values, stage.gateway.values
    everything = [*e2e, *gw]
    if stage.target_s is not None:
        everything.append(stage.target_s)
    x_min = min(0.0, *everything) if everything else 0.0
    x_max = max(everything) if everything else 1.0
    x_max = x_min + max((x_max - x_min) * 1.05, 1.0)
    plot_w = _SVG_W - _M_LEFT - _M_RIGHT
    plot_h = _SVG_H - _M_TOP - _M_BOTTOM

    def px(x: float) -> float:
        return _M_LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def py(y: float) -> float:
        return _M_TOP + (1 - y) * plot_h

    parts = [
        f'<svg width="{_SVG_W}" height="{_SVG_H}" viewBox="0 0 {_SVG_W} {_SVG_H}" role="img"'
        f' aria-label="{_esc(stage.stage)} latency CDF">',
        f'<rect x="{_M_LEFT}" y="{_M_TOP}" width="{plot_w}" height="{plot_h}"'
        ' fill="#fcfcfc" stroke="#999"/>',
    ]
    for y, label in ((0.5, "50%"), (0.9, "90%"), (1.0, "100%")):
        parts.append(
            f'<line x1="{_M_LEFT}" y1="{py(y):.1f}" x2="{_M_LEFT + plot_w}" y2="{py(y):.1f}"'
            ' stroke="#ddd"/>'
            f'<text x="{_M_LEFT - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for x in _ticks(x_min, x_max):
        parts.append(
            f'<line x1="{px(x):.1f}" y1="{_M_TOP + plot_h}" x2="{px(x):.1f}"'
            f' y2="{_M_TOP + plot_h + 4}" stroke="#999"/>'
            f'<text x="{px(x):.1f}" y="{_M_TOP + plot_h + 16}" text-anchor="middle">'
            f"{_esc(format_duration(x))}</text>"
        )
    for values, color, dash in ((e2e, _E2E_COLOR, ""), (gw, _GW_COLOR, ' stroke-dasharray="6 3"')):
        if not values:
            continue
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in _curve(values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
        )
    if stage.target_s is not None:
        tx = px(stage.target_s)
        # The label goes left of the line, or right of it when the line is near the left edge.
        label_x, anchor = (tx - 3, "end") if tx - _M_LEFT > 90 else (tx + 3, "start")
        parts.append(
            f'<line x1="{tx:.1f}" y1="{_M_TOP}" x2="{tx:.1f}" y2="{_M_TOP + plot_h}"'
            ' stroke="#c0392b" stroke-width="1.5"/>'
            f'<text x="{label_x:.1f}" y="{_M_TOP + 12}" text-anchor="{anchor}" fill="#c0392b">'
            f"target {_esc(format_duration(stage.target_s))}</text>"
        )
    legend_y = _SVG_H - 8
    parts.append(
        f'<line x1="{_M_LEFT}" y1="{legend_y - 4}" x2="{_M_LEFT + 24}" y2="{legend_y - 4}"'
        f' stroke="{_E2E_COLOR}" stroke-width="2"/>'
        f'<text x="{_M_LEFT + 28}" y="{legend_y}">end to end (n={len(e2e)})</text>'
        f'<line x1="{_M_LEFT + 190}" y1="{legend_y - 4}" x2="{_M_LEFT + 214}"'
        f' y2="{legend_y - 4}" stroke="{_GW_COLOR}" stroke-width="2" stroke-dasharray="6 3"/>'
        f'<text x="{_M_LEFT + 218}" y="{legend_y}">gateway (n={len(gw)})</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: SlaReport) -> str:
    """One self-contained HTML page (no external resources) with the tables and CDF charts."""
    title, counts = heading(report)
    body = [f"<h1>{_esc(title)}</h1>", f'<p class="muted">{_esc(counts)}</p>']
    headline = headline_section(report)
    body += [f'<h2 id="headline">{_esc(headline.title)}</h2>', _html_section(headline)]
    if report.skew_count:
        body.append(
            f'<p class="warn">{report.skew_count} task(s) show clock skew: their end-to-end'
            " figures are unreliable (see Clock skew).</p>"
        )
    for section in stage_sections(report):
        body += [f"<h2>{_esc(section.title)}</h2>", _html_section(section)]
    body += [
        "<h2>Distributions</h2>",
        '<p class="muted">Cumulative share of the assignments that reached the stage, by latency;'
        " solid: end to end, dashed: gateway-measured; red line: the target.</p>",
        '<div class="charts">',
        *(
            f"<figure><figcaption>{_esc(s.stage)}</figcaption>{_cdf_svg(s)}</figure>"
            for s in report.stages
        ),
        "</div>",
    ]
    for section in other_sections(report):
        body += [f"<h2>{_esc(section.title)}</h2>", _html_section(section)]
    body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_esc(n)}</li>" for n in report.notes), "</ul>"]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
