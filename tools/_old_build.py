#!/usr/bin/env python3
"""The previous build, for the rolling-deploy test of two builds in one cluster
(``tests/integration/test_review4_mixed_build.py``, which runs only where ``CLERK_OLD_BUILD``
names a tree of another build).

    python3 tools/_old_build.py     # prints the old tree's path (exit 0), or why not (exit 1)

``tools/test`` runs it and sets ``CLERK_OLD_BUILD`` to the path (or ``CLERK_OLD_BUILD_WHY``
to the reason, which the test's skip message gives). The old build is commit
:data:`OLD_BUILD`'s ``clerk/`` and ``supervisor/`` (``git archive``), extracted once into
``.venv/clerk-old-build/<commit>/`` (beside the venv that runs both builds; a new venv
extracts it again) and compiled to byte-code there (a node of it starts from the .pyc, as
this tree's do: ``tools/_venv.sh``). Not where git or the commit is missing (a tarball of the
sources, a shallow clone), nor where the commit's dependencies differ from this tree's (the
venv may then not run it): the test is skipped then.
"""

from __future__ import annotations

import compileall
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Any

#: The build a new one is deployed beside (a rolling deploy, old <-> new): the main of the
#: session before the current one's protocol changes. Move it forward when a release makes
#: an older build one that no cluster runs any more.
OLD_BUILD = "1ff308e"
ROOT = Path(__file__).resolve().parent.parent
HOW = ("to run it by hand: CLERK_OLD_BUILD=DIR pytest tests/integration/"
       "test_review4_mixed_build.py, DIR holding another build's clerk/ and supervisor/ "
       f"(from a full clone: git archive {OLD_BUILD} clerk supervisor | tar -x -C DIR)")


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          timeout=60).stdout


def _dependencies(pyproject: bytes | str) -> list[str]:
    data: Any = tomllib.loads(pyproject.decode() if isinstance(pyproject, bytes) else pyproject)
    deps = data.get("project", {}).get("dependencies", [])
    return sorted(str(d) for d in deps)


def provide(commit: str = OLD_BUILD, root: Path = ROOT,
            cache: Path | None = None) -> tuple[Path | None, str]:
    """Commit ``commit``'s tree (of the repository at ``root``), extracted into ``cache``
    (default: ``<root>/.venv/clerk-old-build``) if it is not yet; or None and why not."""
    cache = cache if cache is not None else root / ".venv" / "clerk-old-build"
    try:
        top = _git(root, "rev-parse", "--show-toplevel").decode().strip()
        if Path(top).resolve() != root.resolve():  # (a tarball unpacked inside another repository)
            raise subprocess.CalledProcessError(1, "git rev-parse --show-toplevel")
        _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    except FileNotFoundError:
        return None, f"git is not installed, so commit {commit} cannot be extracted; {HOW}"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None, (f"commit {commit} is not in {root} (no git repository, a tarball or a "
                      f"shallow clone?); {HOW}")
    try:
        old = _dependencies(_git(root, "show", f"{commit}:pyproject.toml"))
        new = _dependencies((root / "pyproject.toml").read_text())
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError,
            tomllib.TOMLDecodeError, AttributeError) as exc:
        return None, f"cannot compare commit {commit}'s dependencies with this tree's: {exc}"
    if old != new:
        return None, (f"commit {commit} depends on {old}, this tree on {new}: the venv may "
                      f"not run it; {HOW}")
    dest = cache / commit
    if (dest / ".complete").is_file():
        return dest, ""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{commit}.", dir=cache))
    tmp.chmod(0o755)
    try:
        data = _git(root, "archive", "--format=tar", commit, "clerk", "supervisor")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        compileall.compile_dir(tmp, quiet=1, workers=0)
        (tmp / ".complete").write_text(f"git archive {commit} clerk supervisor\n")
        try:
            os.rename(tmp, dest)
        except OSError:  # another run extracted it meanwhile
            if not (dest / ".complete").is_file():
                raise
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError,
            tarfile.TarError) as exc:
        return None, f"cannot extract commit {commit}: {exc}; {HOW}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, ""


def main() -> int:
    tree, why = provide()
    print(tree if tree is not None else why)
    return 0 if tree is not None else 1


if __name__ == "__main__":
    sys.exit(main())
