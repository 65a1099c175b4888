"""HTML pieces the report's pages share: escaping, tables, style and the page frame.

Every value that reaches a page goes through `esc`: instructions, responses and reject
details are model output or scraped code, hostile until escaped. Markup this code built
itself from escaped parts travels as `Markup`, the one thing tables insert as is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

# The report's pages, side by side in one directory, linking each other by these names.
INDEX_PAGE = "index.html"
TRENDS_PAGE = "trends.html"
EXAMPLES_PAGE = "examples.html"


class Markup(str):
    """HTML built here from escaped parts: inserted as is."""


@dataclass(frozen=True)
class Cell:
    """A table cell with a class (`bad`: a regression, shown red) and a hover note."""

    value: Any
    css: str = ""
    note: str = ""


def esc(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


def num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, (int, float)) else esc(value)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def money(value: float | None) -> str:
    """A cost as people read it: cents for sums, three digits for fractions of a unit."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _cell(value: Any, numeric: bool) -> str:
    css = ["n"] if numeric else []
    note = ""
    if isinstance(value, Cell):
        css += [value.css] if value.css else []
        note = f' title="{esc(value.note)}"' if value.note else ""
        value = value.value
    text = num(value) if numeric else esc(value)
    classes = f' class="{" ".join(css)}"' if css else ""
    return f"<td{classes}{note}>{text}</td>"


def table_html(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(_cell(c, i >= numeric_from) for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def link(href: str, text: str) -> Markup:
    return Markup(f'<a href="{esc(href)}">{esc(text)}</a>')


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;
color:#222;padding:0 1rem}body.wide{max-width:80rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin-top:1.5rem}h4{font-size:.9rem;margin:.8rem 0 .2rem}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th{background:#f4f4f4}
td:first-child{white-space:nowrap}
td.bad{background:#fde2e2;color:#a40000;font-weight:600}
.meta{color:#666;font-size:.9rem}
.alert{background:#fde2e2;border-left:4px solid #c44e52;padding:.5rem 1rem;list-style:none}
.alert li{color:#a40000}.ok{background:#e6f4ea;border-left:4px solid #55a868;padding:.5rem 1rem}
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:.5rem;white-space:pre-wrap;
overflow-wrap:anywhere;font-size:.8rem;max-height:24rem;overflow:auto}
td.detail{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:.75rem;
overflow-wrap:anywhere;max-width:30rem}
.lineage{font-size:.85rem;color:#444}.untraced{color:#888;font-style:italic}
.example{border-top:1px solid #eee;margin-top:1rem}
details summary{cursor:pointer;margin:.4rem 0}
"""


def page(title: str, heading: str, meta: str, sections: list[str], wide: bool = False) -> str:
    """A whole page; `meta` is markup (links), everything else is escaped here or before.
    `wide`: for tables with a column per stage or night."""
    body = '<body class="wide">' if wide else "<body>"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"{body}<h1>{esc(heading)}</h1><p class=\"meta\">{meta}</p>"
        + "".join(sections) + "</body></html>\n"
    )
