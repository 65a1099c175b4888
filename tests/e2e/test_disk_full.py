"""A full disk under the lake: a clear message, and a rerun after freeing space finishes the job.

The lake lives on a real tmpfs mounted with a small size in a private mount namespace
(`unshare -m`), so writes fail with ENOSPC exactly as on a full volume. Freeing space
is copying what the failed run left on the full volume to a roomy one: the rerun works
on exactly those files, in this process (a warm JVM: a cold one costs a minute of CI).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs.cli import main as cli_main
from tests.e2e.test_cli import BIN, REPO
from tests.stack_rows import stack_row, write_stack

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FILES = 200

SCRIPT = r"""
set -u
mount -t tmpfs -o size="$SMALL" tmpfs "$LAKE"
"$SELFALIGN" "$@" > "$OUT/first.log" 2>&1; echo $? > "$OUT/first.rc"
cp -a "$LAKE/." "$OUT/lake/"
"""


def unshare_prefix() -> list[str] | None:
    """`unshare` arguments that give us a private mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m", "--propagation", "private"],
                   ["unshare", "-rm", "--propagation", "private"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix
    return None


def corpus_row(index: int) -> dict:
    # Random words: the table files cannot compress below the tmpfs size.
    words = " ".join(secrets.token_hex(8) for _ in range(200))
    code = f'def tag_{index}(x):\n    """Tag x: {words}."""\n    return (x, {index})\n'
    return stack_row(code, path=f"pkg/m{index}.py")


def test_full_disk_is_a_clear_error_and_the_rerun_completes(spark, tmp_path: Path, capsys):
    prefix = unshare_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m / -rm refused): cannot mount a tiny fs")
    src = write_stack(tmp_path / "in" / "part-0.parquet", [corpus_row(i) for i in range(FILES)])
    lake, out = tmp_path / "lake", tmp_path / "out"
    lake.mkdir()
    (out / "lake").mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "SMALL": "600k", "LAKE": str(lake), "OUT": str(out), "SELFALIGN": str(BIN / "selfalign")}
    args = ["run", "--until", "extract", "--no-status", "--set", f"input.path={src}",
            "--set", f"spark.ivy_dir={REPO / '.ivy'}"]
    subprocess.run([*prefix, "bash", "-c", SCRIPT, "disk-full", *args, "--set", f"lake.root={lake}"],
                   cwd=REPO, env=env, timeout=900, check=True, stdin=subprocess.DEVNULL)

    first = (out / "first.log").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first[-4000:]
    last = first.strip().splitlines()[-1]
    assert last.startswith("selfalign: error: stage "), last
    assert "No space left on device" in last and "free space where lake.root lives" in last

    assert any((out / "lake").iterdir()), "the failed run left nothing: the rerun would prove nothing"
    with pytest.raises(SystemExit) as rerun:
        cli_main([*args, "--set", f"lake.root={out / 'lake'}"])
    assert rerun.value.code == 0, capsys.readouterr().err[-4000:]
    functions = spark.read.format("delta").load(str(out / "lake" / "functions"))
    assert functions.count() == functions.select("function_id").distinct().count() == FILES
    progress = spark.read.format("delta").load(str(out / "lake" / "progress"))
    assert progress.where("stage = 'extract'").count() == FILES
