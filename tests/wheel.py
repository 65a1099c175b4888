"""The project as users get it: a built wheel, and a Python that can import the project
only from that wheel.

The project venv has selfalign installed in editable mode (its `__editable__` .pth maps
jobs/, udfs/, schemas/ to this checkout). `isolated_python` makes a throwaway venv that
sees the project venv's third-party packages through a plain path line in a .pth: a path
line adds the directory but does not run the .pth files inside it, so the editable
finder is never installed and the checkout stays out of reach.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEEL_CONTENT = ("jobs", "udfs", "schemas", "conf")


def _offline_backend() -> bool:
    """The venv's setuptools can build this pyproject (PEP 639 license string) without
    downloading a build environment."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        return False


def build_wheel(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    isolation = [] if not _offline_backend() else ["--no-isolation"]
    try:
        import build  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ModuleNotFoundError:
        no_build = ["--no-build-isolation"] if isolation else []
        # "./src", not "src": pip reads a bare word as a package name on the index.
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *no_build,
                   "--wheel-dir", str(out), str(source.resolve())]
    else:
        command = [sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(out),
                   str(source)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def copy_wheel_source(source: Path) -> Path:
    """What the wheel is made of, copied: no build/ or egg-info lands in the checkout."""
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in WHEEL_CONTENT:
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return source


def built_wheel(tmp: Path) -> Path:
    """selfalign-*.whl built from a copy of the checkout; skips when no backend can build it."""
    out = tmp / "dist"
    result = build_wheel(copy_wheel_source(tmp / "src"), out)
    if result.returncode != 0 and "satisfies the requirement setuptools" in result.stdout + result.stderr:
        pytest.skip("building needs setuptools>=77 from the package index, which is unreachable")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    wheels = list(out.glob("selfalign-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def isolated_python(root: Path) -> Path:
    """A venv's python that imports the project venv's dependencies but not the project.

    Its bin/ also holds a `pyright` script for its own interpreter: the typecheck stage
    runs the pyright beside sys.executable, as in an environment where the wheel's
    dependencies were pip-installed.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   capture_output=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    Path(purelib, "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pyright = root / "bin" / "pyright"
    pyright.write_text(f"#!{python}\nimport sys\nfrom pyright.cli import entrypoint\n"
                       "sys.exit(entrypoint())\n")
    pyright.chmod(0o755)
    return python
