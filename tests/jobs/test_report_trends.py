"""`selfalign report`'s trends and examples pages over a hand-planted lake of four nights.

Every expected number below is worked out by hand from the planted rows (in the comments),
never by calling the code under test.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")

from jobs.tools.page import EXAMPLES_PAGE, TRENDS_PAGE
from jobs.tools.report_examples import clip
from jobs.tools.report_examples_html import render_examples_html
from jobs.tools.report_trends import regressions
from jobs.tools.report_trends_html import TREND_CHARTS
from schemas.outcome import Reason
from tests.jobs.test_report import assert_png, embedded_png, page_refs
from tests.lakes import new_context
from udfs import report_charts

HOSTILE = "<script>alert('pwned')</script>"
LONG_RESPONSE = "".join(f"line {n:03d} of the answer\n" for n in range(200))  # 4,400 characters

# --- the planted nights -----------------------------------------------------------------
#
# night-0 is older than the 3-night window. Nights 1-3 each run extract, respond, execute
# and select at fixed offsets from 01:00. Per night (in, out, seconds, cost):
#   extract  100 -> 250 in 10 s (yield 2.5, 10 rows/s), cost 0
#   respond   10 ->  40 in 20 s, tokens 1,000 in / 8,000 out (400 out/s), 1,800 GPU-s, cost 3 (night 3: 5)
#   execute   40 ->  32 in  8 s (night 3: 40 -> 16, the pass rate halved), cost 1
#   select    10 ->   8 / 10 / 5 (nights 1/2/3) in 2 s, cost 0
# so cost 4 / 4 / 6, cost per pair 4/8 = 0.5, 4/10 = 0.4, 6/5 = 1.2; GPU-hours 0.5 each.
# executions: 40 rows a night, 32 / 32 / 16 passing -> pass rate 0.8 / 0.8 / 0.4.
NIGHTS = ("night-1", "night-2", "night-3")
KEPT = {"night-1": 8, "night-2": 10, "night-3": 5}
PASSED = {"night-1": 32, "night-2": 32, "night-3": 16}
RESPOND_COST = {"night-1": 3.0, "night-2": 3.0, "night-3": 5.0}


def night_start(night: str) -> datetime:
    return datetime(2024, 3, 1, 1, 0, 0) + timedelta(days=int(night.split("-")[1]) - 1)


def stage_runs(night: str) -> list[tuple]:
    """The `runs` rows of one night: a 'running' row and a 'succeeded' row per stage."""
    start = night_start(night)
    plan = [  # stage, minutes after start, seconds, in, out, rejected, tokens in/out, gpu-s, cost
        ("extract", 0, 10, 100, 250, 20, None, None, 0.0, 0.0),
        ("respond", 10, 20, 10, 40, 0, 1000, 8000, 1800.0, RESPOND_COST[night]),
        ("execute", 20, 8, 40, PASSED[night], 40 - PASSED[night], 0, 0, 0.0, 1.0),
        ("select", 30, 2, 10, KEPT[night], 10 - KEPT[night], 0, 0, 0.0, 0.0),
    ]
    rows = []
    for stage, minutes, seconds, rows_in, rows_out, rejected, t_in, t_out, gpu, cost in plan:
        began = start + timedelta(minutes=minutes)
        rows.append((night, stage, "running", began, None, None, None, None, "fp", None,
                     None, None, None, None, None, None, None, None))
        rows.append((night, stage, "succeeded", began, began + timedelta(seconds=seconds), rows_in,
                     rows_out, rejected, "fp", None, 0, 1, t_in, t_out, 1.0, gpu, 0.5, cost))
    return rows


# Rejects with their nights. Extract names a dropped function `hexsha:function_id`, a
# dropped file by its hexsha; respond/select name an instruction, execute a response.
PLANTED_REJECTS = [
    ("deadbeef", "extract", Reason.SYNTAX_ERROR, "line 3", "deadbeef", "night-1"),  # no kept function
    ("h1:fx", "extract", Reason.NO_ARGUMENTS, "fx()", "h1", "night-1"),
    ("fb", "typecheck", Reason.TYPE_ERROR, "reportGeneralTypeIssues", "fb", "night-2"),
    ("i2", "select", Reason.NO_PASSING_RESPONSE, "0 of 2 responses passed", "i2", "night-2"),
    ("i3", "respond", Reason.GENERATION_ERROR, "timeout", "i3", "night-3"),  # i3: in no table
    ("r1", "execute", Reason.EXECUTION_FAIL, "AssertionError", "r1", "night-1"),
    ("r2", "execute", Reason.EXECUTION_FAIL, f"stderr: {HOSTILE}", "r2", "night-3"),
    ("r3", "execute", Reason.EXECUTION_FAIL, "x" * 1000, "r3", "night-3"),
    ("r4", "execute", Reason.EXECUTION_FAIL, "ZeroDivisionError", "r4", "night-3"),
]
FUNCTION_A = {"function_id": "fa", "function_name": "parse_header", "repo": "acme/web",
              "path": "src/http.py", "hexsha": "h1", "licenses": ["MIT"]}
FUNCTION_B = {"function_id": "fb", "function_name": "merge_sorted", "repo": "octo/<lib>",
              "path": "lib/merge.py", "hexsha": "h2", "licenses": ["Apache-2.0", "BSD-3-Clause"]}


def plant(ctx) -> None:
    from schemas import FUNCTIONS, INSTRUCTIONS, REJECTS, RESPONSES, RUNS
    from schemas.sft import EXECUTIONS, SFT

    spark, lake = ctx.spark, ctx.lake

    def put(spec, rows) -> None:
        lake.append(spec, spark.createDataFrame(rows, spec.schema))

    old = night_start("night-1") - timedelta(days=3)
    put(RUNS, [r for night in NIGHTS for r in stage_runs(night)] + [
        ("night-0", "extract", "succeeded", old, old + timedelta(seconds=5), 1, 1, 0, "fp", None,
         0, 1, None, None, 0.0, 0.0, 0.0, None)])
    put(REJECTS, [(item, stage, reason.value, detail, key, night)
                  for item, stage, reason, detail, key, night in PLANTED_REJECTS])
    put(EXECUTIONS, [(f"{night}-e{n}", "i1", "pass" if n < PASSED[night] else "fail",
                      n < PASSED[night], 0.1, "process", 0, None, None, None, night)
                     for night in NIGHTS for n in range(40)])
    put(FUNCTIONS, [(f["function_id"], f["function_name"], "def f(x)", "Doc.", "def f(x): return x", "",
                     1, 1, True, f["hexsha"], f["repo"], f["path"], f["licenses"], 5, "night-1")
                    for f in (FUNCTION_A, FUNCTION_B)])
    made_by = ("starcoder2", "v1", "{}", "night-1")
    put(INSTRUCTIONS, [("i1", "fa", "function", "easy", [], HOSTILE, *made_by),
                       ("i2", "fb", "function", "hard", [], "Merge two lists.", *made_by)])
    put(RESPONSES, [(rid, iid, 0, "text", "code", "tests", [], "stop", 10, *made_by)
                    for rid, iid in (("r1", "i1"), ("r2", "i1"), ("r3", "i2"), ("r4", "i2"))])

    def pair(iid: str, seed: str, instruction: str, response: str, night: str) -> tuple:
        return (iid, instruction, response, f"{iid}-r", seed, None, None, None, None, None, None,
                None, "starcoder2", "v1", "{}", None, None, None, None, night)

    # i9's instruction is in no table: its chain breaks there.
    put(SFT, [pair("i9", "f9", "Orphan task.", "def g(): pass", "night-1"),
              pair("i2", "fb", "Merge two lists.", "def merge(a, b): ...", "night-2"),
              pair("i1", "fa", f"Parse it. {HOSTILE}", LONG_RESPONSE, "night-3")])


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """The lake, its tables and its report (3 nights), shared by the module's Spark tests."""
    from jobs.tools.report import build_report

    root = tmp_path_factory.mktemp("trends")
    ctx = new_context(root / "lake")
    plant(ctx)
    index = build_report(ctx, out=root / "reports", nights=3)
    return ctx, index, json.loads((index.parent / "summary.json").read_text())


def stage_of(night: dict, stage: str) -> dict:
    return next(s for s in night["stages"] if s["stage"] == stage)


@pytest.mark.spark
def test_trends_numbers_are_the_planted_ones(built):
    _, index, summary = built
    trends = summary["trends"]
    assert summary["run_id"] == "night-3" and index.parent.name == "night-3"
    assert trends["nights_requested"] == 3
    nights = trends["nights"]
    assert [n["run_id"] for n in nights] == list(NIGHTS)  # night-0 is outside the window
    assert [n["label"] for n in nights] == ["2024-03-01 01:00", "2024-03-02 01:00", "2024-03-03 01:00"]
    for night in nights:
        assert [s["stage"] for s in night["stages"]] == ["extract", "respond", "execute", "select"]
        assert all(s["status"] == "succeeded" for s in night["stages"]) and night["status"] == "succeeded"
        extract, respond = stage_of(night, "extract"), stage_of(night, "respond")
        assert (extract["rows_in"], extract["rows_out"], extract["rows_rejected"]) == (100, 250, 20)
        assert (extract["yield"], extract["seconds"], extract["rows_per_s"]) == (2.5, 10.0, 10.0)
        assert extract["tokens_out_per_s"] is None  # no tokens outside the generation stages
        assert (respond["yield"], respond["rows_per_s"], respond["tokens_out_per_s"]) == (4.0, 0.5, 400.0)
        assert (night["tokens_in"], night["tokens_out"], night["gpu_hours"]) == (1000, 8000, 0.5)
        assert night["executions"] == 40
    assert [stage_of(n, "execute")["yield"] for n in nights] == [0.8, 0.8, 0.4]
    assert [stage_of(n, "select")["yield"] for n in nights] == [0.8, 1.0, 0.5]
    assert [n["pass_rate"] for n in nights] == [0.8, 0.8, 0.4]
    assert [n["sft_kept"] for n in nights] == [8, 10, 5]
    assert [n["cost"] for n in nights] == [4.0, 4.0, 6.0]
    assert [n["cost_per_pair"] for n in nights] == [0.5, 0.4, 1.2]
    assert [n["rejects"] for n in nights] == [
        {"extract": {"no_arguments": 1, "syntax_error": 1}, "execute": {"execution_fail": 1}},
        {"typecheck": {"type_error": 1}, "select": {"no_passing_response": 1}},
        {"respond": {"generation_error": 1}, "execute": {"execution_fail": 3}},
    ]


@pytest.mark.spark
def test_night_three_halved_pass_rate_is_a_regression(built):
    _, index, summary = built
    # Nights 1 and 2: execute 0.8 both (median 0.8); night 3: 0.4, half of it. Select's
    # 0.5 is at most 60% of median(0.8, 1.0) = 0.9 (0.54): a regression too.
    assert summary["trends"]["regressions"] == [
        {"run_id": "night-3", "metric": "yield", "stage": "execute", "value": 0.4, "baseline": 0.8},
        {"run_id": "night-3", "metric": "yield", "stage": "select", "value": 0.5, "baseline": 0.9},
        {"run_id": "night-3", "metric": "pass_rate", "stage": "execute", "value": 0.4, "baseline": 0.8},
    ]
    text = (index.parent / TRENDS_PAGE).read_text(encoding="utf-8")
    marked = re.findall(r"<tr><td>([^<]*)</td>(?:(?!</tr>).)*?<td class=\"n bad\"[^>]*>([^<]*)</td>", text)
    assert marked and {night for night, _ in marked} == {"2024-03-03 01:00"}, marked
    # The first marked cell of each row: execute's yield and the pass rate; select's follows.
    assert all(value == "40.0% ▼" for _, value in marked)
    assert '<td class="n bad"' in text and "50.0% ▼" in text
    assert "▼ regression: night 2024-03-03 01:00 (night-3): execute pass rate 40.0%" in text


@pytest.mark.spark
def test_the_trends_window_ends_at_the_reported_night(built):
    from jobs.tools.report_trends import collect_trends

    ctx = built[0]
    tables = {name: ctx.lake.peek(name) for name in ("runs", "rejects", "executions")}
    window = collect_trends(tables, "night-2", nights=2)
    assert [n["run_id"] for n in window["nights"]] == ["night-1", "night-2"]
    assert window["regressions"] == []


@pytest.mark.spark
def test_examples_trace_their_lineage_and_are_escaped(built):
    _, index, summary = built
    examples = summary["examples"]
    pairs = {p["instruction_id"]: p for p in examples["pairs"]}
    # The reported night's pair first, then by instruction id.
    assert [p["instruction_id"] for p in examples["pairs"]] == ["i1", "i2", "i9"]
    assert pairs["i1"]["lineage"] == FUNCTION_A and pairs["i2"]["lineage"] == FUNCTION_B
    assert pairs["i9"]["lineage"] is None
    response = pairs["i1"]["response"]
    assert response.endswith("\n…") and len(response) < len(LONG_RESPONSE)
    assert LONG_RESPONSE.startswith(response[:-2])  # cut on a whole line
    assert re.fullmatch(r"line \d{3} of the answer", response[:-2].splitlines()[-1])

    found = {(r["stage"], r["item_id"]): r for r in examples["rejects"]}
    # Three of execution_fail's four: the reported night's (r2, r3, r4) before night 1's r1.
    assert sorted(item for stage, item in found if stage == "execute") == ["r2", "r3", "r4"]
    assert found[("execute", "r2")]["lineage"] == FUNCTION_A  # r2 -> i1 -> fa
    assert found[("select", "i2")]["lineage"] == FUNCTION_B  # i2 -> fb
    assert found[("typecheck", "fb")]["lineage"] == FUNCTION_B
    file_only = {key: FUNCTION_A[key] for key in ("repo", "path", "hexsha", "licenses")}
    assert found[("extract", "h1:fx")]["lineage"] == file_only  # the file, through fa
    assert found[("extract", "h1:fx")]["function_id"] == "fx"
    assert found[("extract", "deadbeef")]["lineage"] is None
    assert found[("respond", "i3")]["lineage"] is None
    assert len(found[("execute", "r3")]["detail"]) < 1000

    text = (index.parent / EXAMPLES_PAGE).read_text(encoding="utf-8")
    assert "<script" not in text
    assert text.count("&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;") >= 2  # pair and reject
    assert "octo/&lt;lib&gt;" in text and "parse_header" in text and "Apache-2.0, BSD-3-Clause" in text
    assert "not traceable to a kept function; item <code title=\"deadbeef\">deadbeef</code>" in text


@pytest.mark.spark
def test_the_trends_page_is_self_contained_and_linked(built):
    _, index, _ = built
    trends = index.parent / TRENDS_PAGE
    refs = page_refs(trends)
    assert sorted(embedded_png(img["src"]) for img in refs.images) == \
        sorted((index.parent / name).read_bytes() for name in TREND_CHARTS.values())
    for name in TREND_CHARTS.values():
        assert_png(index.parent / name)
    links = sorted(ref for ref in refs.refs if not ref.startswith("data:"))
    assert links == ["examples.html", "index.html", "summary.json"]
    assert {"trends.html", "examples.html"} <= set(page_refs(index).refs)
    assert "index.html" in page_refs(index.parent / EXAMPLES_PAGE).refs


# --- no Spark ---------------------------------------------------------------------------

def night(run_id: str, yields: dict[str, float | None], pass_rate: float | None) -> dict:
    return {"run_id": run_id, "pass_rate": pass_rate,
            "stages": [{"stage": stage, "yield": value} for stage, value in yields.items()]}


def test_the_regression_rule_is_60_percent_or_less_of_the_earlier_median():
    nights = [
        night("a", {"dedup": 0.6}, None),
        night("b", {"dedup": 0.36}, 0.9),  # 0.36 <= 0.6 x 0.6: flagged; pass rate: nothing before
        night("c", {"dedup": 0.29}, 0.55),  # median(0.6, 0.36) = 0.48: 0.29 > 0.288; 0.55 > 0.54
        night("d", {"dedup": None, "judge": 0.0}, 0.45),  # median(0.9, 0.55) = 0.725: 0.45 > 0.435
        night("e", {"judge": 0.0}, 0.34),  # judge's median is 0: nothing to fall from; 0.34 > 0.33
        night("f", {}, 0.2),  # median(0.9, 0.55, 0.45, 0.34) = 0.5: 0.2 <= 0.3, flagged
    ]
    assert regressions(nights) == [
        {"run_id": "b", "metric": "yield", "stage": "dedup", "value": 0.36, "baseline": 0.6},
        {"run_id": "f", "metric": "pass_rate", "stage": "execute", "value": 0.2, "baseline": 0.5},
    ]


def test_a_clipped_text_ends_on_a_line_and_says_so():
    assert clip("short", False) == "short" and clip(None, True) is None
    # The last break is within the last quarter: the cut goes back to it.
    assert clip("abcdefghij\nxy", True) == "abcdefghij\n…"
    # Too far back (half the text lost): the cut stays where it was.
    assert clip("abc\ndefghijkl", True) == "abc\ndefghijkl\n…"
    assert clip("one long line without a break", True) == "one long line without a break\n…"


def test_trend_charts_draw_nights_and_empty_inputs(tmp_path: Path):
    labels = ["2024-03-01 01:00", "2024-03-02 01:00", "2024-03-03 01:00"]
    made = [
        report_charts.yield_trend_chart(labels, {"execute": [0.8, None, 0.4], "extract": [2.5] * 3},
                                        [("execute", 2)], tmp_path / "y.png"),
        report_charts.pass_rate_trend_chart(labels, [0.8, 0.8, 0.4], [2], tmp_path / "p.png"),
        report_charts.cost_trend_chart(labels, [4.0, None, 0.0042], tmp_path / "c.png"),
        report_charts.yield_trend_chart([], {}, [], tmp_path / "y0.png"),
        report_charts.pass_rate_trend_chart(labels, [None] * 3, [], tmp_path / "p0.png"),
        report_charts.cost_trend_chart(labels, [None] * 3, tmp_path / "c0.png"),
    ]
    for path in made:
        assert_png(path)


def test_hostile_text_on_the_examples_page_stays_text():
    lineage = {"function_id": "f" * 64, "function_name": "<img src=x onerror=alert(1)>",
               "repo": "a/<b>", "path": "\"><script>x()</script>", "hexsha": "h", "licenses": ["<i>"]}
    summary = {"run_id": "n<1>", "lake": "/lake", "examples": {
        "per_reason": 3,
        "pairs": [{"instruction_id": "i1", "run_id": "n<1>", "instruction": HOSTILE,
                   "response": "</pre><script>alert(2)</script>", "lineage": lineage}],
        "rejects": [{"stage": "execute", "reason": "execution_fail", "item_id": "<r>",
                     "source_key": "<r>", "run_id": "n<1>", "detail": HOSTILE, "lineage": None}],
    }}
    text = render_examples_html(summary)
    assert "<script" not in text and "<img" not in text and "a/<b>" not in text and "<i>" not in text
    assert "a/&lt;b&gt;" in text and "&quot;&gt;&lt;script&gt;x()" in text and "&lt;i&gt;" in text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in text
