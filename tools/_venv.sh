# Sourced by tools/test and tools/demo: make .venv (if missing) and install the project into it.
# Needs only a Python >= 3.11 on PATH (override with PYTHON=/path/to/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install (keeps repeat runs fast).
STAMP=.venv/.clerk-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$STAMP"
fi
VPY="$ROOT/.venv/bin/python"
# The package's byte-code, written once: where PYTHONDONTWRITEBYTECODE is set (it is on this
# project's machines and CI), every node, agent and worker process a test starts compiled
# clerk from source (~0.3 s of CPU per agent start). compileall writes it explicitly and
# skips what is up to date; Python checks each .pyc against its source's mtime.
"$VPY" -m compileall -q -j 0 clerk supervisor >/dev/null
