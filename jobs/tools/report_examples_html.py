"""The report's examples page (no Spark): kept SFT pairs and rejects of every reason,
each with the seed function and source file it traces back to.

Instructions, responses and details are model output or scraped code: every one of
them is escaped (page.esc) and shown as text, never as markup.
"""

from __future__ import annotations

from typing import Any

from jobs.tools.page import INDEX_PAGE, TRENDS_PAGE, Cell, Markup, esc, link, page, table_html

SHORT_ID = 12


def _short(value: str | None) -> Markup:
    """An id cut to SHORT_ID characters, the whole of it on hover."""
    if not value:
        return Markup("-")
    text = value if len(value) <= SHORT_ID else value[:SHORT_ID] + "…"
    return Markup(f'<code title="{esc(value)}">{esc(text)}</code>')


def lineage_html(lineage: dict[str, Any] | None, fallback: list[tuple[str, str | None]]) -> Markup:
    """Where a row comes from: seed function, repo, path, licenses, file; or, when its
    chain breaks, the ids it has (`fallback`: label, id)."""
    if lineage is None:
        known = ", ".join(f"{esc(label)} {_short(value)}" for label, value in fallback if value)
        return Markup(f'<span class="untraced">not traceable to a kept function; {known or "no id"}</span>')
    parts = []
    if lineage.get("function_id"):
        name = lineage.get("function_name")
        parts.append(f"seed function <code>{esc(name)}</code> {_short(lineage['function_id'])}" if name
                     else f"function {_short(lineage['function_id'])}")
    parts.append(f"repo <b>{esc(lineage.get('repo') or '?')}</b>")
    parts.append(f"path <code>{esc(lineage.get('path') or '?')}</code>")
    parts.append("licenses " + esc(", ".join(lineage.get("licenses") or []) or "none recorded"))
    parts.append(f"file {_short(lineage.get('hexsha'))}")
    return Markup(" &middot; ".join(parts))


def _pair_html(number: int, pair: dict[str, Any]) -> str:
    lineage = lineage_html(pair.get("lineage"), [("instruction", pair["instruction_id"])])
    return (
        f"<div class=\"example\"><h3>Pair {number} &middot; instruction "
        f"{_short(pair['instruction_id'])} &middot; run {esc(pair['run_id'])}</h3>"
        f"<p class=\"lineage\">{lineage}</p>"
        f"<h4>Instruction</h4><pre>{esc(pair['instruction'])}</pre>"
        f"<h4>Response</h4><pre>{esc(pair['response'])}</pre></div>"
    )


def _reject_row(reject: dict[str, Any]) -> list[Any]:
    lineage = dict(reject["lineage"]) if reject.get("lineage") else None
    if lineage is not None and reject.get("function_id"):
        # extract dropped this function: the file is traced, the function is only its id.
        lineage["function_id"], lineage["function_name"] = reject["function_id"], None
    fallback = [("item", reject["item_id"]), ("source key", reject["source_key"])]
    return [_short(reject["item_id"]), reject["run_id"],
            Cell(reject["detail"] if reject["detail"] is not None else "-", "detail"),
            lineage_html(lineage, fallback)]


def _rejects_html(rejects: list[dict[str, Any]], per_reason: int) -> str:
    if not rejects:
        return "<h2>Rejects</h2><p>No rejects yet.</p>"
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for reject in rejects:  # already in stage, then reason order
        groups.setdefault((reject["stage"], reject["reason"]), []).append(reject)
    blocks = []
    for (stage, reason), rows in groups.items():
        table = table_html(["item", "run", "detail", "traced to"], [_reject_row(r) for r in rows],
                           numeric_from=4)
        blocks.append(f"<h3>{esc(stage)}: {esc(reason)}</h3>{table}")
    intro = f"<p class=\"meta\">Up to {per_reason} of each reason, the reported run's first.</p>"
    return "<h2>Rejects by reason</h2>" + intro + "".join(blocks)


def render_examples_html(summary: dict[str, Any]) -> str:
    examples = summary.get("examples") or {}
    pairs = examples.get("pairs") or []
    kept = ("".join(_pair_html(i, pair) for i, pair in enumerate(pairs, 1))
            or "<p>No SFT pairs yet (the select stage has not kept any).</p>")
    meta = Markup(
        f"lake {esc(summary['lake'])} &middot; run {esc(summary['run_id'])} &middot; "
        f"{link(INDEX_PAGE, 'back to the report')} &middot; {link(TRENDS_PAGE, 'trends')}"
    )
    sections = ["<h2>Kept SFT pairs</h2>" + kept,
                _rejects_html(examples.get("rejects") or [], examples.get("per_reason", 0))]
    return page(f"selfalign examples {summary['run_id']}", "selfalign examples: kept pairs and rejects",
                meta, sections)
