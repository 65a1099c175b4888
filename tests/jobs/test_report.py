"""`selfalign report` over a small hand-planted lake: numbers, PNGs, and the page in a browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from datetime import datetime
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")

from jobs.tools.report import PASS_BINS
from jobs.tools.report_html import CHARTS, render_report, safe_dir_name
from jobs.tools.report_trends_html import TREND_CHARTS
from schemas.outcome import Reason
from tests.lakes import new_context
from udfs import report_charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --- the planted lake, and what the report must say about it ---------------------------
#
# files f1 f2 f3 -> functions a..f; f is contaminated; e fails pyright; a+b are one
# cluster (a represents it), c and d are alone; the judge likes a and c, not d; a has
# two instructions (easy, hard), c one (easy); responses r1..r5, of which r1 r2 r3 pass.
# No `sft` table: the select stage has not run.
FUNCS = "abcdef"
EXPECTED_FUNNEL = {
    "files": 3, "functions": 6, "decontaminated": 5, "typechecked": 4, "representatives": 3,
    "seeds": 2, "concepts": 2, "instructions": 3, "responses": 5, "passed": 3, "sft": 0,
}
EXPECTED_REJECTS = {
    "extract": {Reason.NO_ARGUMENTS: 2, Reason.SYNTAX_ERROR: 1},
    "decontaminate": {"contaminated": 1},
    "typecheck": {"reportAttributeAccessIssue": 1},
    "judge": {Reason.JUDGE_NO: 1},
}
PLANTED_INSTRUCTIONS = {"i1": ("a", "easy"), "i2": ("a", "hard"), "i3": ("c", "easy")}
PLANTED_RESPONSES = {"r1": ("i1", True), "r2": ("i1", True), "r3": ("i2", True), "r4": ("i2", False),
             "r5": ("i3", False)}


def executions_spec():
    """`executions` as the execute stage will write it (not in schemas/ yet)."""
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType

    from schemas import TableSpec

    return TableSpec(
        name="executions",
        schema=StructType([
            StructField("response_id", StringType(), False),
            StructField("passed", BooleanType(), False),
            StructField("run_id", StringType(), False),
        ]),
        key=("response_id",),
        description="test stand-in",
    )


def plant(ctx) -> None:
    from schemas import (
        CLUSTERS,
        CONCEPTS,
        DECONTAMINATION,
        FUNCTIONS,
        INSTRUCTIONS,
        PROGRESS,
        QUALITY,
        REJECTS,
        RESPONSES,
        RUNS,
        TYPECHECK,
    )

    spark, lake = ctx.spark, ctx.lake
    made_by = ("starcoder2", "v1", "{}", "t")

    def put(spec, rows) -> None:
        # Plain appends: the rows are unique by construction, and on a shared 2-core
        # machine an append costs about half an insert-only MERGE.
        lake.append(spec, spark.createDataFrame(rows, spec.schema))

    put(PROGRESS, [("extract", f, "t") for f in ("f1", "f2", "f3")] + [("decontaminate", "a", "t")])
    put(FUNCTIONS, [(fid, fid, f"def {fid}(x)", "Doc.", f"def {fid}(x): return x", "", 1, 1, True,
                     "f1", "acme/x", "x.py", ["MIT"], 1, "t") for fid in FUNCS])
    put(DECONTAMINATION, [(fid, fid == "f", None, None, None, None, "t") for fid in FUNCS])
    put(TYPECHECK, [(fid, fid != "e", None, None, None, "1.1.411", "t", "pyright") for fid in "abcde"])
    put(CLUSTERS, [("a", "a", 2, True, "t"), ("b", "a", 2, False, "t"), ("c", "c", 1, True, "t"),
                   ("d", "d", 1, True, "t")])
    put(QUALITY, [("a", True, "Yes", *made_by), ("c", True, "Yes", *made_by),
                  ("d", False, "No", *made_by)])
    put(CONCEPTS, [("a", ["recursion", "Sorting ", " recursion"], None, *made_by),
                   ("c", ["Recursion", "hashing"], None, *made_by)])
    put(INSTRUCTIONS, [(iid, seed, "function", level, ["recursion"], f"Task {iid}", *made_by)
                       for iid, (seed, level) in PLANTED_INSTRUCTIONS.items()])
    put(RESPONSES, [(rid, iid, 0, "text", "code", "tests", [], "stop", 10, *made_by)
                    for rid, (iid, _) in PLANTED_RESPONSES.items()])
    put(executions_spec(), [(rid, ok, "t") for rid, (_, ok) in PLANTED_RESPONSES.items()])
    put(REJECTS, [(item, stage, reason, None, "src", "t")
                  for stage, reasons in EXPECTED_REJECTS.items()
                  for index, (reason, n) in enumerate(reasons.items())
                  for item in (f"{stage}-{index}-{k}" for k in range(n))])
    day = datetime(2024, 1, 1, 0, 0, 0)
    late = datetime(2024, 1, 2, 3, 0, 0)
    runs = [
        ("r-old", "extract", "running", day, None, None, None, None, "fp", None),
        ("r-old", "extract", "succeeded", day, day.replace(minute=1), 3, 6, 3, "fp", None),
        ("r-new", "dedup", "running", late, None, None, None, None, "fp", None),
        ("r-new", "dedup", "succeeded", late, late.replace(second=30), 4, 4, 0, "fp", None),
    ]
    # The usage columns added to `runs` later (rows_failed ... cost) are unknown here.
    put(RUNS, [row + (None,) * (len(RUNS.schema) - len(row)) for row in runs])


@pytest.fixture(scope="module")
def report(spark, tmp_path_factory) -> Path:
    """One Spark-built lake and its report, shared by the module's Spark tests.

    Module-scoped, so it builds the Context the way the function-scoped `make_ctx`
    fixture does rather than requesting it.
    """
    from jobs.tools.report import build_report

    root = tmp_path_factory.mktemp("report")
    ctx = new_context(root / "lake")
    plant(ctx)
    return build_report(ctx, out=root / "reports")


# --- checks ---------------------------------------------------------------------------

def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path.name} is truncated"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    from PIL import Image  # a matplotlib dependency

    with Image.open(path) as image:
        image.verify()
    return width, height


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def embedded_png(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix):], validate=True)


def page_refs(index: Path) -> _Refs:
    parser = _Refs()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


@pytest.mark.spark
def test_summary_numbers_are_the_planted_ones(report: Path):
    assert report.name == "index.html"
    assert report.parent.name == "r-new"  # the newest run in `runs`
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["run_id"] == "r-new"
    assert {s["key"]: s["count"] for s in summary["funnel"]} == EXPECTED_FUNNEL
    assert [s["key"] for s in summary["funnel"] if not s["ran"]] == ["sft"]
    assert summary["rejects"] == EXPECTED_REJECTS
    assert list(summary["rejects"]) == ["extract", "decontaminate", "typecheck", "judge"]
    assert summary["cluster_sizes"] == [{"size": "1", "clusters": 2}, {"size": "2", "clusters": 1}]
    assert summary["top_concepts"] == [{"concept": "recursion", "seeds": 2},
                                       {"concept": "hashing", "seeds": 1},
                                       {"concept": "sorting", "seeds": 1}]
    rates = summary["pass_rates"]
    assert (rates["executions"], rates["passed"], rates["rate"]) == (5, 3, 0.6)
    assert rates["by_difficulty"] == [
        {"difficulty": "easy", "executions": 3, "passed": 2, "rate": 0.6667},
        {"difficulty": "hard", "executions": 2, "passed": 1, "rate": 0.5},
    ]
    histogram = {b["bin"]: b["instructions"] for b in rates["by_instruction"]["histogram"]}
    assert list(histogram) == list(PASS_BINS)
    assert histogram == {"0%": 1, "1-19%": 0, "20-39%": 0, "40-59%": 1, "60-79%": 0, "80-99%": 0,
                         "100%": 1}
    assert (rates["by_instruction"]["instructions"], rates["by_instruction"]["with_a_pass"]) == (3, 2)
    assert summary["run"] == [{
        "stage": "dedup", "status": "succeeded", "started_at": "2024-01-02 03:00:00",
        "seconds": 30.0, "rows_in": 4, "rows_out": 4, "rows_rejected": 0,
    }]


@pytest.mark.spark
def test_every_chart_is_a_png_and_the_page_is_self_contained(report: Path):
    for name in CHARTS.values():
        assert_png(report.parent / name)
    refs = page_refs(report)
    # Every chart is inside the page, as the PNG written beside it.
    assert sorted(embedded_png(img["src"]) for img in refs.images) == \
        sorted((report.parent / name).read_bytes() for name in CHARTS.values())
    assert all(img.get("alt") for img in refs.images)
    # Nothing fetched from anywhere: every other reference is a relative file beside the page.
    others = [ref for ref in refs.refs if not ref.startswith("data:")]
    assert sorted(others) == ["examples.html", "summary.json", "trends.html"], others
    assert all(not re.match(r"^[a-z][a-z0-9+.-]*:|^//|^/", ref, re.I) for ref in others), others
    assert (report.parent / "summary.json").is_file()
    text = report.read_text()
    assert "not run" in text and "<table>" in text
    assert "<script" not in text


CHECK_PAGE = """<!doctype html>
<html><body><pre id="result">pending</pre>
<iframe id="report" src="{page}" width="1200" height="900"></iframe>
<script>
document.getElementById("report").addEventListener("load", function () {{
  var out = document.getElementById("result");
  try {{
    var images = Array.prototype.slice.call(this.contentDocument.images);
    out.textContent = JSON.stringify(images.map(function (img) {{
      return {{src: img.getAttribute("src"), complete: img.complete,
              width: img.naturalWidth, height: img.naturalHeight}};
    }}));
  }} catch (e) {{
    out.textContent = "error: " + e;
  }}
}});
</script></body></html>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def images_in_chromium(browser: str, page: Path, profile: Path) -> list[dict]:
    """What headless Chromium made of every <img> on `page`: loaded, and how big."""
    check = page.parent / "check.html"
    check.write_text(CHECK_PAGE.format(page=page.name))
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--allow-file-access-from-files", f"--user-data-dir={profile}",
             "--dump-dom", check.as_uri()],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
    finally:
        check.unlink()
    found = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no result in chromium's DOM (rc={result.returncode}): {result.stderr[-2000:]}"
    text = unescape(found.group(1))
    assert text.startswith("["), text
    return json.loads(text)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("page, charts", [("index.html", CHARTS), ("trends.html", TREND_CHARTS)])
def test_every_image_loads_in_headless_chromium(report: Path, tmp_path: Path, page: str,
                                                charts: dict[str, str]):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y --no-install-recommends chromium)")
    images = images_in_chromium(browser, report.parent / page, tmp_path / "profile")
    assert len(images) == len(charts)
    sizes = sorted(assert_png(report.parent / name) for name in charts.values())
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, {**image, "src": "..."}
    assert sorted((i["width"], i["height"]) for i in images) == sizes


# --- no Spark: charts and rendering from plain values ---------------------------------

def test_charts_render_empty_inputs_as_explained_placeholders(tmp_path: Path):
    made = [
        report_charts.funnel_chart([], tmp_path / "f.png"),
        report_charts.rejects_chart({}, tmp_path / "r.png"),
        report_charts.pass_rate_chart(None, tmp_path / "p.png"),
        report_charts.pass_rate_chart({"executions": 0}, tmp_path / "p0.png"),
        report_charts.cluster_size_chart([], tmp_path / "c.png"),
        report_charts.top_concepts_chart([], tmp_path / "t.png"),
    ]
    for path in made:
        assert_png(path)


def test_funnel_chart_handles_wide_ranges_and_steps_not_run(tmp_path: Path):
    steps = [{"label": "files", "count": 5_000_000, "ran": True},
             {"label": "pairs", "count": 50_000, "ran": True},
             {"label": "sft", "count": 0, "ran": False}]
    assert_png(report_charts.funnel_chart(steps, tmp_path / "f.png"))


def empty_summary(run_id: str) -> dict:
    return {
        "run_id": run_id, "generated_at": "2024-01-01T00:00:00+00:00", "lake": "/x/<lake>",
        "run": [], "funnel": [{"key": "files", "label": "files read", "stage": "extract",
                              "table": "progress", "count": 0, "ran": False}],
        "rejects": {}, "pass_rates": None, "cluster_sizes": [], "top_concepts": [],
        "charts": dict(CHARTS),
    }


def test_a_lake_with_nothing_still_renders_every_chart(tmp_path: Path):
    index = render_report(empty_summary("latest"), tmp_path)
    assert index == tmp_path / "latest" / "index.html"
    for name in CHARTS.values():
        assert_png(index.parent / name)
    text = index.read_text()
    assert "no executions yet" in text.lower()
    assert "/x/&lt;lake&gt;" in text  # escaped, never raw markup
    assert json.loads((index.parent / "summary.json").read_text())["pass_rates"] is None


def test_run_ids_cannot_escape_the_report_directory():
    assert safe_dir_name("20240101T000000Z-abcd1234") == "20240101T000000Z-abcd1234"
    assert safe_dir_name("../../etc") == "_.._etc"
    assert "/" not in safe_dir_name("a/b") and safe_dir_name("..") == "latest"


def test_cli_has_a_report_command():
    from jobs.cli import build_parser, cmd_report

    args = build_parser().parse_args(["report", "--run-id", "r-1", "--out", "out", "--set", "a.b=1",
                                      "--nights", "7"])
    assert (args.func, args.run_id, args.out, args.overrides, args.nights) == \
        (cmd_report, "r-1", "out", ["a.b=1"], 7)
    defaults = build_parser().parse_args(["report"])
    assert (defaults.run_id, defaults.out, defaults.nights) == (None, "reports", 14)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--nights", "0"])


def test_cluster_sizes_past_ten_are_ranges_that_sort_and_draw(tmp_path: Path):
    # The bundled sample's dedup makes a cluster of more than 10 members: its label is a
    # range, which the chart once fed to int() and crashed on.
    labels = ["101+", "2", "11-20", "1", "51-100", "21-50", "10"]
    assert sorted(labels, key=report_charts.size_order) == ["1", "2", "10", "11-20", "21-50",
                                                           "51-100", "101+"]
    sizes = [{"size": label, "clusters": n} for n, label in enumerate(labels, 1)]
    assert_png(report_charts.cluster_size_chart(sizes, tmp_path / "c.png"))
