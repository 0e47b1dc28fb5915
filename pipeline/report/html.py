"""HTML toolkit of the report pages: number formats, tables, collapsible blocks, the page, PNGs.

Everything here returns HTML text; cells are escaped unless wrapped in :class:`Raw`.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DISPLAY = {"PM2_5": "PM2.5"}


def label(species: str) -> str:
    """Display name of a species id (``PM2_5`` → ``PM2.5``)."""
    return DISPLAY.get(species, species)



def fmt(value: float) -> str:
    """Tonnes (or any amount) for tables: ``3,200``, ``12.5``, ``0.005``, ``0``, ``–``."""
    if value is None or not np.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def fmt_rel(value: float) -> str:
    """Relative change as a signed percentage."""
    if value is None or not np.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    return f"{value:+.2%}" if abs(value) < 10 else f"{value:+.3g}×"


class Raw(str):
    """A table cell that is already HTML (not escaped by :func:`table`)."""


def _cell(value: Any) -> str:
    return str(value) if isinstance(value, Raw) else html.escape(str(value))


def table(headers: list[str], rows: list[list[Any]], *, numeric: set[int] | None = None,
          table_id: str | None = None, bold_last: bool = False) -> str:
    """A small HTML table; cells are escaped, numeric columns right-aligned."""
    numeric = numeric or set()
    tid = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{html.escape(str(h))}</th>"
                   for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = ' class="total"' if bold_last and k == len(rows) - 1 else ""
        cells = "".join(f"<td{' class=num' if i in numeric else ''}>{_cell(v)}</td>"
                        for i, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table>")


def details(summary: str, inner: str, open_: bool = False) -> str:
    """A collapsible block."""
    return (f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>"
            f"{inner}</details>")


CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'Noto Sans SC',sans-serif;margin:0 auto;
max-width:1280px;padding:0 24px 48px;color:#1d2330;line-height:1.4}
h1{font-size:1.6em;margin:.8em 0 .2em}h2{border-bottom:2px solid #2b5d8a;padding-bottom:4px;
margin-top:2em;color:#2b5d8a}h3{margin:1.2em 0 .4em}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;
font-size:.9em;z-index:2}nav a{margin-right:12px;color:#2b5d8a;text-decoration:none}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0 1em}
th,td{border:1px solid #d5d9e0;padding:3px 7px;vertical-align:top}
th{background:#eef2f7;position:sticky;top:30px}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tr.total td{font-weight:600;background:#f6f8fb}
tbody tr:nth-child(even){background:#fafbfc}.scroll{overflow-x:auto}
.meta td:first-child{font-weight:600;white-space:nowrap}.meta td{font-family:ui-monospace,monospace}
.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00;
font-weight:600}.note{color:#555;font-size:.9em}figure{margin:.5em 0}
.figs{display:flex;flex-wrap:wrap;gap:8px}.figs img{width:calc(50% - 8px);min-width:420px}
img{max-width:100%;height:auto;border:1px solid #eee}details{margin:.4em 0 1em}
summary{cursor:pointer;color:#2b5d8a;font-weight:600}
"""


def html_page(title: str, nav: list[tuple[str, str]], body: list[str]) -> str:
    """The whole page: title, sticky navigation, sections."""
    links = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in nav)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><nav>{links}</nav>{''.join(body)}</body></html>")


def save_png(fig: plt.Figure, out_dir: Path, name: str, dpi: int = 100) -> str:
    """Save ``fig`` as ``out_dir/name`` and return an ``<img>`` tag embedding it (data URI)."""
    path = out_dir / name
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}" title="{name}">'
