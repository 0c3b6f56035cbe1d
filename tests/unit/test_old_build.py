"""tools/_old_build.py: the previous build for the mixed-build test, extracted from git where it
can be, and a reason that says how to run the test where it cannot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from _old_build import OLD_BUILD, provide  # type: ignore[import-not-found]  # noqa: E402

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]

PYPROJECT = '[project]\nname = "x"\ndependencies = ["pyzmq>=25", "psutil>=5.9"]\n'


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def _repo(root: Path, pyproject: str = PYPROJECT) -> str:
    """A repository whose one commit holds a build (clerk/, supervisor/, pyproject.toml)."""
    for pkg in ("clerk", "supervisor"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text(f"WHICH = 'old {pkg}'\n")
    (root / "pyproject.toml").write_text(pyproject)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "old")
    return _git(root, "rev-parse", "--short", "HEAD")


def test_the_commits_build_is_extracted_once_and_compiled(tmp_path: Path) -> None:
    commit = _repo(tmp_path / "r")
    (tmp_path / "r" / "clerk" / "__init__.py").write_text("WHICH = 'new'\n")  # the new build
    tree, why = provide(commit, tmp_path / "r", tmp_path / "cache")
    assert tree == tmp_path / "cache" / commit and why == ""
    assert (tree / "clerk" / "__init__.py").read_text() == "WHICH = 'old clerk'\n"
    assert (tree / "supervisor" / "__init__.py").is_file()
    assert list((tree / "clerk" / "__pycache__").glob("__init__.*.pyc"))
    assert not (tree / "pyproject.toml").exists(), "only clerk/ and supervisor/"
    assert provide(commit, tmp_path / "r", tmp_path / "cache") == (tree, "")  # kept
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [commit], "no temp left"


def test_without_the_commit_it_says_how_to_run_the_test(tmp_path: Path) -> None:
    commit = _repo(tmp_path / "r")
    tree, why = provide("0" * 40, tmp_path / "r", tmp_path / "cache")
    assert tree is None and "is not in" in why and "CLERK_OLD_BUILD=DIR" in why
    # A tarball of the sources unpacked inside another repository: that one is not ours,
    # even where it holds the commit.
    inner = tmp_path / "r" / "tarball"
    (inner / "tools").mkdir(parents=True)
    tree, why = provide(commit, inner, tmp_path / "cache")
    assert tree is None and f"commit {commit} is not in {inner}" in why
    assert OLD_BUILD in why, "the pinned commit is named for the run by hand"


def test_other_dependencies_are_refused(tmp_path: Path) -> None:
    commit = _repo(tmp_path / "r", PYPROJECT.replace('"psutil>=5.9"', '"psutil>=5.9", "x>=1"'))
    (tmp_path / "r" / "pyproject.toml").write_text(PYPROJECT)  # this tree's, without x
    tree, why = provide(commit, tmp_path / "r", tmp_path / "cache")
    assert tree is None and "x>=1" in why and "the venv may not run it" in why
