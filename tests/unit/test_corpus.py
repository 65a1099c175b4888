"""Sample-corpus builder: per-file values, licenses, selection, and a real small build."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from email.message import Message
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main as cli_main
from udfs.corpus import (
    Candidate,
    Source,
    choose,
    eligible_candidates,
    git_blob_sha1,
    license_of,
    line_stats,
    stdlib_sources,
)

SMALL = 30
MAX_BYTES = 100_000

# Written out by hand from the task's column list, not taken from the module.
EXPECTED_COLUMNS = [
    ("hexsha", pa.string()),
    ("size", pa.int64()),
    ("ext", pa.string()),
    ("lang", pa.string()),
    ("max_stars_repo_path", pa.string()),
    ("max_stars_repo_name", pa.string()),
    ("max_stars_repo_head_hexsha", pa.string()),
    ("max_stars_repo_licenses", pa.list_(pa.string())),
    ("max_stars_count", pa.int64()),
    ("content", pa.string()),
    ("avg_line_length", pa.float64()),
    ("max_line_length", pa.int64()),
    ("alphanum_fraction", pa.float64()),
]


def git_hash_object(paths: list[Path]) -> list[str]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    out = subprocess.run([git, "hash-object", *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


# ---- per-file values -------------------------------------------------------------


def test_git_blob_sha1_matches_git_hash_object(tmp_path: Path) -> None:
    blobs = [b"", b"print('hi')\n", "# caf\u00e9 \u2603\r\nx = 1".encode(), bytes(range(256))]
    paths = []
    for i, data in enumerate(blobs):
        path = tmp_path / f"blob{i}"
        path.write_bytes(data)
        paths.append(path)
    assert [git_blob_sha1(data) for data in blobs] == git_hash_object(paths)


def test_line_stats_by_hand() -> None:
    # Lines "ab", "", "c1 2" -> lengths 2, 0, 4; 9 characters, 5 of them alphanumeric.
    avg, longest, alnum = line_stats("ab\n\nc1 2\n")
    assert avg == pytest.approx(2.0)
    assert longest == 4
    assert alnum == pytest.approx(5 / 9)


def test_line_stats_crlf_and_empty() -> None:
    # "\r\n" ends a line without counting toward its length: lines "x" and "yz".
    assert line_stats("x\r\nyz") == pytest.approx((1.5, 2, 3 / 5))
    assert line_stats("") == (0.0, 0, 0.0)


# ---- licenses --------------------------------------------------------------------


def fake_dist(license_expression: str | None = None, license_field: str | None = None,
              classifiers: tuple[str, ...] = ()) -> SimpleNamespace:
    meta = Message()
    meta["Name"] = "fake"
    if license_expression is not None:
        meta["License-Expression"] = license_expression
    if license_field is not None:
        meta["License"] = license_field
    for classifier in classifiers:
        meta["Classifier"] = classifier
    return SimpleNamespace(metadata=meta)


MIT_CLASSIFIER = "License :: OSI Approved :: MIT License"


@pytest.mark.parametrize(
    ("dist", "expected"),
    [
        (fake_dist("MIT", "Apache-2.0", (MIT_CLASSIFIER,)), ["MIT"]),
        (fake_dist("Apache-2.0 OR BSD-2-Clause"), ["Apache-2.0", "BSD-2-Clause"]),
        (fake_dist("(MIT AND Zlib) OR MIT"), ["MIT", "Zlib"]),
        (fake_dist(license_field="Apache-2.0", classifiers=(MIT_CLASSIFIER,)), ["Apache-2.0"]),
        (fake_dist(license_field="MPL-2.0 AND MIT"), ["MPL-2.0", "MIT"]),
        (fake_dist(license_field="BSD License"), ["BSD-3-Clause"]),
        # Whole license texts are not labels: fall through to the classifiers.
        (fake_dist(license_field="BSD 3-Clause License\n\nCopyright (c) 2008, AQR",
                   classifiers=("License :: OSI Approved :: BSD License",)), ["BSD-3-Clause"]),
        (fake_dist(license_field="x" * 41, classifiers=(MIT_CLASSIFIER,)), ["MIT"]),
        (fake_dist(license_field="UNKNOWN", classifiers=(
            "License :: OSI Approved :: Apache Software License",
            "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
            "Programming Language :: Python :: 3",
        )), ["Apache-2.0", "GPL-3.0-or-later"]),
        (fake_dist(classifiers=("License :: OSI Approved :: Python Software Foundation License",)),
         ["PSF-2.0"]),
        (fake_dist(classifiers=("License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)",)),
         ["LGPL-3.0-only"]),
        (fake_dist(classifiers=("License :: Other/Proprietary License",)), ["NOASSERTION"]),
        (fake_dist(), ["NOASSERTION"]),
    ],
)
def test_license_of(dist: SimpleNamespace, expected: list[str]) -> None:
    assert license_of(dist) == expected


# ---- sources and selection -------------------------------------------------------


def source(tmp_path: Path, repo: str, path: str, data: bytes) -> Source:
    file = tmp_path / repo.replace("/", "_") / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    return Source(repo, path, file, "1.0", ("MIT",))


def test_eligible_candidates_filters_and_dedupes(tmp_path: Path) -> None:
    shared = b"def f():\n    return 1\n"
    sources = [
        source(tmp_path, "pypi/b", "b.py", shared),
        source(tmp_path, "pypi/a", "copy.py", shared),
        source(tmp_path, "pypi/a", "latin1.py", "x = '\u00e9'\n".encode("latin-1")),
        source(tmp_path, "pypi/a", "big.py", b"#" * 101),
        source(tmp_path, "pypi/a", "edge.py", b"#" * 100),
    ]
    kept = eligible_candidates(sources, max_file_bytes=100)
    # The copy sorted first by (repo, path) wins; non-UTF-8 and oversized files are out.
    assert [(c.source.repo, c.source.path) for c in kept] == [
        ("pypi/a", "copy.py"), ("pypi/a", "edge.py")]
    assert len({c.hexsha for c in kept}) == 2


def test_choose_is_seeded_and_caps_at_population() -> None:
    pool = [Candidate(Source("r", f"{i}.py", Path(f"{i}.py"), "1", ()), f"{i:040x}")
            for i in range(50)]
    assert choose(pool, 10, seed=3) == choose(pool, 10, seed=3)
    assert len(set(choose(pool, 10, seed=3))) == 10
    assert choose(pool, 10, seed=3) != choose(pool, 10, seed=4)
    assert choose(pool, 80, seed=3) == pool


def test_stdlib_sources_skip_tests_and_idle(tmp_path: Path) -> None:
    for rel in ("json/__init__.py", "json/tests/test_x.py", "test/support.py",
                "idlelib/run.py", "site-packages/pkg/mod.py", "lib2to3/tests/data/f.py",
                "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    assert [s.path for s in stdlib_sources(tmp_path)] == ["json/__init__.py"]


# ---- a real small build ----------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from udfs.corpus import build_sample

    root = tmp_path_factory.mktemp("corpus")
    first, second = root / "first.parquet", root / "second.parquet"
    stats = build_sample(first, SMALL, 0, MAX_BYTES)
    build_sample(second, SMALL, 0, MAX_BYTES)
    assert (stats.files, stats.bytes) == (SMALL, sum(pq.read_table(first)["size"].to_pylist()))
    return first, second


def test_build_has_the_stack_schema(built: tuple[Path, Path]) -> None:
    first, _ = built
    schema = pq.read_schema(first)
    assert [(f.name, f.type) for f in schema] == EXPECTED_COLUMNS
    meta = pq.ParquetFile(first).metadata
    assert meta.num_rows == SMALL
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_build_rows_are_real_files(built: tuple[Path, Path], tmp_path: Path) -> None:
    rows = pq.read_table(built[0]).to_pylist()
    hexshas = [r["hexsha"] for r in rows]
    assert hexshas == sorted(set(hexshas))
    roots = {"python/cpython": Path(sysconfig.get_paths()["stdlib"]),
             "pypi": Path(sysconfig.get_paths()["purelib"])}
    blob_paths = []
    for i, row in enumerate(rows):
        data = row["content"].encode("utf-8")
        assert row["size"] == len(data) <= MAX_BYTES
        assert (row["ext"], row["lang"]) == ("py", "Python")
        assert row["max_stars_repo_licenses"]
        repo = row["max_stars_repo_name"]
        root = roots["python/cpython" if repo == "python/cpython" else "pypi"]
        assert repo == "python/cpython" or repo.startswith("pypi/")
        assert (root / row["max_stars_repo_path"]).read_bytes() == data
        blob_paths.append(tmp_path / f"{i}.py")
        blob_paths[-1].write_bytes(data)
    assert git_hash_object(blob_paths) == hexshas


def test_build_is_deterministic(built: tuple[Path, Path]) -> None:
    first, second = built
    assert pq.read_table(first).equals(pq.read_table(second))


def test_cli_with_another_seed_picks_other_files(built: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nested" / "other.parquet"
    with pytest.raises(SystemExit) as done:
        cli_main(["sample", "--set", f"sample.out={out}", "--set", f"sample.files={SMALL}",
                  "--set", "run.seed=43"])  # sample seed 1
    assert done.value.code == 0
    assert f"files={SMALL}" in capsys.readouterr().out
    seed0 = set(pq.read_table(built[0])["hexsha"].to_pylist())
    seed1 = set(pq.read_table(out)["hexsha"].to_pylist())
    assert len(seed1) == SMALL
    assert seed0 != seed1
