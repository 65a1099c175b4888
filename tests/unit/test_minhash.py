"""MinHash-LSH dedup logic: datasketch-exact signatures, banding maths, and the
end-to-end quality of candidates + confirmation + components on real code."""

from __future__ import annotations

import ast
import hashlib
import itertools
import random
import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash

from jobs.core.sections import DedupConfig
from jobs.ops.lsh import LSHParams, band_choice
from tests.minhash_reference import candidate_pairs, confirmed_edges, connected_components
from udfs.extract import extract_file
from udfs.minhash import (
    MinHasher,
    band_hash_matrix,
    band_hashes,
    hashes_to_bytes,
    jaccard_estimate,
    optimal_bands,
    shingles,
    signatures_to_bytes,
)
from udfs.minhash import exact_jaccard as stored_jaccard

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CFG = DedupConfig()


# --- real code -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Distinct documented functions of the stdlib's top-level modules with at least
    20 shingles, in a fixed order that mixes modules (sorted by content hash)."""
    seen: set[str] = set()
    found: list[str] = []
    for path in sorted(STDLIB.glob("*.py")):
        functions = extract_file(path.read_text(encoding="utf-8"), 10_000_000)
        if not isinstance(functions, list):
            continue
        for fn in functions:
            if fn.function_id not in seen and len(shingles(fn.code)) >= 20:
                seen.add(fn.function_id)
                found.append(fn.code)
    assert len(found) >= 500, f"only {len(found)} stdlib functions found under {STDLIB}"
    return sorted(found, key=lambda code: hashlib.sha256(code.encode()).hexdigest())


def datasketch_signature(items: set[str], num_perm: int = 256, seed: int = 1,
                         scheme: str = "affine32") -> np.ndarray:
    sketch = MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
    for item in items:
        sketch.update(item.encode("utf-8"))
    return sketch.hashvalues


def exact_jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


# --- planted near-duplicates ------------------------------------------------------------

def _function_node(code: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    node = ast.parse(code).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    return node


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


def rename_locals(code: str) -> str:
    """Rename the first real argument and the first assigned local."""
    node = _function_node(code)
    arguments = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
    assigned = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    for name in list(dict.fromkeys(arguments[:1] + assigned[:1])):
        code = re.sub(rf"\b{re.escape(name)}\b", f"{name}_v2", code)
    return code


def reformat_whitespace(code: str) -> str:
    """Two-space indents, blank lines between statements, padded commas."""
    lines = []
    for line in code.split("\n"):
        stripped = line.lstrip(" ")
        indent = (len(line) - len(stripped)) // 2
        lines.append(" " * indent + stripped.replace(", ", " ,  "))
    return "\n\n".join(lines)


def add_comments(code: str) -> str:
    node = _function_node(code)
    lines = code.split("\n")
    at = node.body[0].lineno - _first_line(node)
    indent = re.match(r"\s*", lines[at]).group(0)  # type: ignore[union-attr]
    comment = f"{indent}# Kept in sync with the caller: see the module notes."
    return "\n".join([*lines[:at], comment, *lines[at:-1], lines[-1] + "  # done"])


def add_line(code: str) -> str:
    """One extra statement right after the docstring."""
    node = _function_node(code)
    lines = code.split("\n")
    first_body = node.body[0]
    indent = re.match(r"\s*", lines[first_body.lineno - _first_line(node)]).group(0)  # type: ignore[union-attr]
    at = (first_body.end_lineno or first_body.lineno) - _first_line(node) + 1
    return "\n".join([*lines[:at], f"{indent}checked = None", *lines[at:]])


VARIANTS: list[Callable[[str], str]] = [rename_locals, reformat_whitespace, add_comments, add_line]


def family(code: str) -> list[str]:
    return [code] + [variant(code) for variant in VARIANTS]


def run_pipeline(docs: dict[str, str], threshold: float = CFG.threshold) -> dict[str, str]:
    """signatures -> band candidates -> confirmed edges -> components, as the stage does."""
    ids = sorted(docs)
    hasher = MinHasher(CFG.num_perm, CFG.seed)
    sigs = hasher.signatures([shingles(docs[i], CFG.shingle_size) for i in ids])
    bands, rows = optimal_bands(threshold, CFG.num_perm, CFG.fp_weight, CFG.fn_weight)
    pairs = candidate_pairs(ids, sigs, bands, rows)
    edges = confirmed_edges(pairs, dict(zip(ids, sigs, strict=True)), threshold)
    return connected_components(edges, ids)


# --- shingles ---------------------------------------------------------------------------

def test_shingles_empty_and_token_free_code() -> None:
    assert shingles("") == set()
    assert shingles("  ()\n\t:= ...") == set()


def test_shingles_shorter_than_size_is_one_shingle() -> None:
    assert shingles("def f(x):") == {"def f x"}
    assert shingles("a b c d e") == {"a b c d e"}


def test_shingles_are_lowercased_word_ngrams() -> None:
    assert shingles("A(b, C) + d * E - F") == {"a b c d e", "b c d e f"}
    assert shingles("x y z", size=1) == {"x", "y", "z"}
    assert shingles("x y x y x y", size=2) == {"x y", "y x"}


def test_shingles_ignore_whitespace_and_punctuation() -> None:
    assert shingles("def f(a, b):\n    return a+b") == shingles("def  f ( a,b ) :\treturn a + b")


def test_shingles_count_and_unicode() -> None:
    tokens = [f"t{i}" for i in range(12)]
    assert len(shingles(" ".join(tokens))) == 12 - 5 + 1
    assert shingles("größe = Maß(x)", size=2) == {"größe maß", "maß x"}


def test_shingles_reject_nonpositive_size() -> None:
    with pytest.raises(ValueError, match="size"):
        shingles("a b", size=0)


def test_nonalpha_split_shingles_are_text_dedups() -> None:
    """re.split(r"\\W") of the lower-cased text: every single non-word character splits, so
    empty tokens stay. "def f(a, b):\\n    return a" gives the 13 tokens
    def f a '' b '' '' '' '' '' '' return a, whose 9 windows of 5 hold 8 distinct shingles."""
    got = shingles("DEF f(a, b):\n    return a", 5, "nonalpha_split")
    assert got == {"def f a  b", "f a  b ", "a  b  ", " b   ", "b    ", "    ",
                   "    return", "   return a"}
    # Spacing counts: one more space is one more empty token, so other shingles.
    assert shingles("def f(a,  b):\n    return a", 5, "nonalpha_split") != got
    assert shingles("def f(a,  b):\n    return a") == shingles("def f(a, b):\n    return a")


def test_nonalpha_split_under_five_tokens_has_no_shingles() -> None:
    assert shingles("a b c d", 5, "nonalpha_split") == set()  # 4 tokens
    assert shingles("a b c d e", 5, "nonalpha_split") == {"a b c d e"}
    assert shingles("a b c d e", 6, "nonalpha_split") == {"a b c d e"}  # shorter than one shingle
    assert shingles("a b c d") == {"a b c d"}  # words: one shingle


def test_rows_without_shingles_get_no_band_keys_under_nonalpha_split() -> None:
    from jobs.ops.lsh import band_key_batches

    hasher = MinHasher(16, 1)
    sigs = hasher.signatures([shingles("x y", 5, "nonalpha_split"), {"a b c d e"}])
    batch = pd.DataFrame({"id": ["short", "long"], "is_new": [True, True],
                          "signature": signatures_to_bytes(sigs)})
    kept = pd.concat(band_key_batches(iter([batch]), 16, 4, 4, skip_empty=True))
    assert set(kept["id"]) == {"long"} and len(kept) == 4
    every = pd.concat(band_key_batches(iter([batch]), 16, 4, 4))
    assert list(every["id"]) == ["short"] * 4 + ["long"] * 4


def test_published_profile_is_text_dedups_banding() -> None:
    """text-dedup's optimal_param(0.5, 250, 0.5, 0.5) is 41 bands x 6 rows (minhash.py:181)."""
    from jobs.core.config import load_config

    params = LSHParams.from_config(load_config(None, profiles=["published"]).dedup)
    assert (params.num_perm, params.verify, params.tokenizer) == (250, "none", "nonalpha_split")
    assert band_choice(params) == (41, 6)
    default = LSHParams.from_config(load_config(None).dedup)
    assert (default.num_perm, default.verify, default.tokenizer) == (256, "exact", "words")


# --- signatures ---------------------------------------------------------------------------

def test_signatures_equal_datasketch_on_real_code(corpus: list[str]) -> None:
    sets = [shingles(code) for code in corpus[:60]]
    hasher = MinHasher(num_perm=256, seed=1)
    batch = hasher.signatures(sets)
    assert batch.shape == (60, 256) and batch.dtype == np.uint32
    for items, row in zip(sets, batch, strict=True):
        expected = datasketch_signature(items)
        assert expected.dtype == row.dtype
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_array_equal(hasher.signature(items), expected)


@pytest.mark.parametrize(("scheme", "num_perm", "seed"),
                         [("legacy", 128, 1), ("affine64", 64, 7), ("affine32", 100, 42)])
def test_signatures_equal_datasketch_other_schemes(corpus: list[str], scheme: str,
                                                   num_perm: int, seed: int) -> None:
    sets = [shingles(code) for code in corpus[60:75]]
    batch = MinHasher(num_perm, seed, scheme=scheme).signatures(sets)
    for items, row in zip(sets, batch, strict=True):
        np.testing.assert_array_equal(row, datasketch_signature(items, num_perm, seed, scheme))


def test_empty_set_signature_is_datasketch_empty_sketch() -> None:
    hasher = MinHasher(256, 1)
    np.testing.assert_array_equal(hasher.signature(set()), MinHash(256, 1).hashvalues)
    batch = hasher.signatures([set(), {"a b"}, set()])
    np.testing.assert_array_equal(batch[0], MinHash(256, 1).hashvalues)
    np.testing.assert_array_equal(batch[1], datasketch_signature({"a b"}))


def test_chunking_does_not_change_signatures(corpus: list[str]) -> None:
    # Tiny chunks force every path: packed documents, empty ones, and documents
    # larger than a chunk.
    sets = [shingles(code) for code in corpus[:20]]
    sets.insert(3, set())
    sets.append(set().union(*sets))
    whole = MinHasher(256, 1, chunk_rows=1_000_000).signatures(sets)
    chunked = MinHasher(256, 1, chunk_rows=7).signatures(sets)
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(chunked[-1], datasketch_signature(sets[-1]))


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="scheme"):
        MinHasher(scheme="sha256")


def test_jaccard_estimate_matches_datasketch_and_exact(corpus: list[str]) -> None:
    a = shingles(corpus[0])
    b = shingles(add_line(rename_locals(corpus[0])))
    hasher = MinHasher(256, 1)
    sig_a, sig_b = hasher.signature(a), hasher.signature(b)
    left, right = MinHash(256, 1), MinHash(256, 1)
    left.update_batch([s.encode() for s in a])
    right.update_batch([s.encode() for s in b])
    assert jaccard_estimate(sig_a, sig_b) == left.jaccard(right)
    assert jaccard_estimate(sig_a, sig_a) == 1.0
    # 256 slots: standard error <= 0.032, so 0.15 is > 4.5 sigma.
    assert abs(jaccard_estimate(sig_a, sig_b) - exact_jaccard(a, b)) < 0.15
    with pytest.raises(ValueError, match="shape"):
        jaccard_estimate(sig_a, sig_b[:10])


# --- banding -------------------------------------------------------------------------------

def s_curve(s: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - s**rows) ** bands


def weighted_error(threshold: float, bands: np.ndarray, rows: np.ndarray,
                   fp: float, fn: float) -> np.ndarray:
    """Independent check of the objective: a fine trapezoid rule on the S-curve."""
    below = np.linspace(0.0, threshold, 2001)
    above = np.linspace(threshold, 1.0, 2001)
    b, r = bands[:, None], rows[:, None]
    false_pos = np.trapezoid(1.0 - (1.0 - below**r) ** b, below, axis=1)
    false_neg = np.trapezoid((1.0 - above**r) ** b, above, axis=1)
    return fp * false_pos + fn * false_neg


@pytest.mark.parametrize(("fp", "fn"), [(0.5, 0.5), (CFG.fp_weight, CFG.fn_weight)])
def test_optimal_bands_s_curve_straddles_threshold(fp: float, fn: float) -> None:
    bands, rows = optimal_bands(0.5, 256, fp, fn)
    assert bands >= 1 and rows >= 1 and bands * rows <= 256
    assert s_curve(0.6, bands, rows) > 0.5
    assert s_curve(0.4, bands, rows) < 0.5
    assert s_curve(0.8, bands, rows) > 0.99
    assert s_curve(0.2, bands, rows) < 0.05


@pytest.mark.parametrize(("threshold", "num_perm", "fp", "fn"),
                         [(0.5, 256, 0.5, 0.5), (0.5, 256, 0.2, 0.8), (0.8, 128, 0.5, 0.5)])
def test_optimal_bands_is_the_grid_minimum(threshold: float, num_perm: int,
                                           fp: float, fn: float) -> None:
    bands, rows = optimal_bands(threshold, num_perm, fp, fn)
    grid = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    errors = weighted_error(threshold, grid[:, 0].astype(float), grid[:, 1].astype(float), fp, fn)
    mine = weighted_error(threshold, np.array([float(bands)]), np.array([float(rows)]), fp, fn)[0]
    assert mine <= errors.min() + 1e-6


def test_recall_leaning_weights_raise_the_curve_at_threshold() -> None:
    even = optimal_bands(0.5, 256, 0.5, 0.5)
    lean = optimal_bands(0.5, 256, 0.2, 0.8)
    assert s_curve(0.5, *lean) > s_curve(0.5, *even)


def test_band_hashes_are_per_band_and_deterministic() -> None:
    sig = np.arange(256, dtype=np.uint32) * np.uint32(2654435761)
    keys = band_hashes(sig, 51, 5)
    assert len(keys) == 51 and len(set(keys)) == 51
    assert all(-(2**63) <= k < 2**63 for k in keys)
    changed = sig.copy()
    changed[5 * 7 + 2] += 1  # a row of band 7
    diff = [i for i, (a, b) in enumerate(zip(keys, band_hashes(changed, 51, 5), strict=True)) if a != b]
    assert diff == [7]
    # The same row values in two bands still give different keys: the band index is mixed in.
    assert band_hashes(np.zeros(10, np.uint32), 2, 5)[0] != band_hashes(np.zeros(10, np.uint32), 2, 5)[1]
    assert band_hash_matrix(np.stack([sig, changed]), 51, 5)[0].tolist() == keys
    with pytest.raises(ValueError, match="exceed"):
        band_hashes(sig, 52, 5)


def test_band_hashes_do_not_depend_on_the_process() -> None:
    script = (
        "import numpy as np; from udfs.minhash import band_hashes;"
        "print(band_hashes(np.arange(256, dtype=np.uint32) * 7, 42, 6))"
    )
    root = Path(__file__).resolve().parents[2]
    runs = {
        subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                       check=True, env={"PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    expected = str(band_hashes(np.arange(256, dtype=np.uint32) * 7, 42, 6))
    assert runs == {expected + "\n"}


def test_candidate_pairs_are_exactly_the_band_collisions(corpus: list[str]) -> None:
    codes = corpus[:40] + [variant(code) for code in corpus[:8] for variant in VARIANTS]
    ids = [f"f{i:03d}" for i in range(len(codes))]
    sigs = MinHasher(256, 1).signatures([shingles(c) for c in codes])
    bands, rows = 51, 5
    grouped = sigs[:, : bands * rows].reshape(len(ids), bands, rows)
    brute = {
        (ids[i], ids[j])
        for i, j in itertools.combinations(range(len(ids)), 2)
        if (grouped[i] == grouped[j]).all(axis=1).any()
    }
    assert brute  # the planted variants collide
    assert candidate_pairs(ids, sigs, bands, rows) == brute


def test_confirmed_edges_keep_pairs_at_or_above_threshold() -> None:
    base = np.arange(8, dtype=np.uint32)
    half = base.copy()
    half[:4] += 100
    third = base.copy()
    third[:6] += 100
    sig_by_id = {"a": base, "b": half, "c": third}
    edges = confirmed_edges([("b", "a"), ("a", "c")], sig_by_id, 0.5)
    assert edges == {("a", "b")}


# --- components ----------------------------------------------------------------------------------

def test_connected_components_small_graph() -> None:
    edges = [("d", "c"), ("c", "b"), ("x", "y"), ("q", "q")]
    got = connected_components(edges, ["a", "b", "c", "d", "x", "y", "z"])
    assert got == {"a": "a", "b": "b", "c": "b", "d": "b", "x": "x", "y": "x", "z": "z", "q": "q"}


def test_connected_components_match_graph_search() -> None:
    rng = random.Random(7)
    nodes = [f"n{i:03d}" for i in range(300)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(220)]
    adjacency: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    expected: dict[str, str] = {}
    for start in nodes:
        if start in expected:
            continue
        seen, stack = {start}, [start]
        while stack:
            for nxt in adjacency[stack.pop()] - seen:
                seen.add(nxt)
                stack.append(nxt)
        for member in seen:
            expected[member] = min(seen)
    assert connected_components(edges, nodes) == expected


# --- end to end on planted near-duplicates ----------------------------------------------------------

def _pick_families(corpus: list[str], families: int, loners: int) -> tuple[list[str], list[str]]:
    """Bases whose variants are clearly near-duplicates (exact J >= 0.7), and loners;
    all chosen functions pairwise clearly unrelated (exact J < 0.3)."""
    chosen: list[set[str]] = []
    bases: list[str] = []
    singles: list[str] = []
    for code in corpus:
        items = shingles(code)
        if len(items) < 40 or any(exact_jaccard(items, other) >= 0.3 for other in chosen):
            continue
        if len(bases) < families:
            if min(exact_jaccard(items, shingles(v)) for v in family(code)[1:]) < 0.7:
                continue
            bases.append(code)
        elif len(singles) < loners:
            singles.append(code)
        else:
            break
        chosen.append(items)
    assert len(bases) == families and len(singles) == loners
    return bases, singles


def test_planted_families_become_one_component_each(corpus: list[str]) -> None:
    bases, loners = _pick_families(corpus, families=10, loners=20)
    docs: dict[str, str] = {}
    expected_group: dict[str, str] = {}
    for f, base in enumerate(bases):
        for v, code in enumerate(family(base)):
            docs[f"fam{f:02d}-{v}"] = code
            expected_group[f"fam{f:02d}-{v}"] = f"fam{f:02d}"
    for i, code in enumerate(loners):
        docs[f"solo{i:02d}"] = code
        expected_group[f"solo{i:02d}"] = f"solo{i:02d}"

    components = run_pipeline(docs)

    groups: dict[str, set[str]] = {}
    for doc_id, label in components.items():
        groups.setdefault(label, set()).add(doc_id)
    expected: dict[str, set[str]] = {}
    for doc_id, group in expected_group.items():
        expected.setdefault(group, set()).add(doc_id)
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, expected.values()))
    assert components["fam03-2"] == "fam03-0"  # label = smallest id in the component


def test_pipeline_precision_and_recall_against_exact_jaccard(
    corpus: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sample = corpus[:300]
    planted = [variant(code) for code in sample[:40] for variant in VARIANTS]
    codes = sample + planted
    ids = [f"d{i:04d}" for i in range(len(codes))]
    sets = [shingles(code, CFG.shingle_size) for code in codes]
    threshold = CFG.threshold
    positives = {
        (ids[i], ids[j])
        for i, j in itertools.combinations(range(len(ids)), 2)
        if exact_jaccard(sets[i], sets[j]) >= threshold
    }

    sigs, hashes = MinHasher(CFG.num_perm, CFG.seed).signatures_and_hashes(sets)
    # As the dedup stage does it: bands tuned below the threshold, candidates confirmed
    # on the stored shingle hashes.
    bands, rows = band_choice(LSHParams.from_config(CFG))
    candidates = candidate_pairs(ids, sigs, bands, rows)
    stored = dict(zip(ids, hashes_to_bytes(hashes), strict=True))
    predicted = {(a, b) for a, b in candidates if stored_jaccard(stored[a], stored[b]) >= threshold}

    hits = len(predicted & positives)
    precision = hits / len(predicted)
    recall = hits / len(positives)
    with capsys.disabled():
        print(
            f"\n[minhash quality] {len(sample)} real + {len(planted)} planted = {len(ids)} functions, "
            f"{len(ids) * (len(ids) - 1) // 2} pairs, {len(positives)} with exact J >= {threshold}; "
            f"bands x rows = {bands} x {rows}; candidates {len(candidates)}, "
            f"confirmed {len(predicted)}, LSH recall {len(candidates & positives) / len(positives):.4f}; "
            f"precision {precision:.4f} recall {recall:.4f}"
        )
    assert len(positives) >= 150  # the planted families alone give 40 * C(5, 2) candidates
    assert precision >= 0.99
    assert recall >= 0.98


def test_stored_shingle_hashes_give_the_exact_jaccard_of_the_shingle_sets(corpus: list[str]) -> None:
    codes = corpus[:40] + [variant(code) for code in corpus[:10] for variant in VARIANTS]
    sets = [shingles(code) for code in codes]
    _, hashes = MinHasher(CFG.num_perm, CFG.seed).signatures_and_hashes(sets)
    stored = hashes_to_bytes(hashes)
    for i, j in itertools.combinations(range(len(codes)), 2):
        assert stored_jaccard(stored[i], stored[j]) == pytest.approx(exact_jaccard(sets[i], sets[j]))
    assert stored_jaccard(hashes_to_bytes([np.array([], dtype=np.uint32)])[0], b"") == 1.0
