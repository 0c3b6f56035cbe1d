#!/usr/bin/env python3
"""Where each process role's CPU goes under a steady load: py-spy on a running 3-node cluster.

    .venv/bin/python -m pip install py-spy          # once (a profiling-only dependency)
    .venv/bin/python tools/profile_roles.py         # 400 runs/s, 15 s, manager + a follower
    .venv/bin/python tools/profile_roles.py --rate 800 --seconds 20 --roles follower worker
    .venv/bin/python tools/profile_roles.py --top 60 --keep /tmp/prof   # keep the raw stacks

Starts the cluster of ``tools/bench_tasks.py`` (c) (``LocalCluster``, 3 nodes, CURVE on, 2
workers per node, ``rate / 10`` Stamp tasks every 100 ms), waits for it to settle, then samples
the chosen processes at once with ``py-spy record --gil`` (only while a thread holds the
interpreter: Python's own work, not the waits) and prints, per role, the functions' share of
the samples, inclusive and self (``--match`` keeps only the frames whose text has it). Roles:
``manager`` (the manager's agent), ``follower`` (another node's agent), ``worker`` (one of a
follower's workers), ``host`` (a node's host process). A share is of that process's samples:
multiply by the role's CPU per run (``bench_tasks.py --only c``) for microseconds per run.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_counts import clerk_role_pids  # noqa: E402
from _bench_lateness import STAMP  # noqa: E402

import clerk  # noqa: E402
from clerk.testing import LocalCluster  # noqa: E402

ROLES = ("manager", "follower", "worker", "host")
_PATH = re.compile(r" \(/[^()]*/(clerk|supervisor|zmq|json|logging|tools)/")
_LINE = re.compile(r":\d+\)$")


def _py_spy() -> str:
    near = Path(sys.executable).parent / "py-spy"
    found = str(near) if near.is_file() else shutil.which("py-spy")
    if found is None:
        sys.exit("py-spy is not installed: .venv/bin/python -m pip install py-spy")
    return found


def _pick(roles: dict[int, str], manager_pid_role: str) -> dict[str, int]:
    """One process per role (the first follower, that follower's first worker)."""
    by: dict[str, list[int]] = collections.defaultdict(list)
    for pid, role in sorted(roles.items()):
        by[role].append(pid)
    out = {"manager": by[manager_pid_role][0], "follower": by["agents"][0],
           "host": by["hosts"][0]}
    follower = out["follower"]
    workers = [p for p in by["workers"] if _parent(p) == _parent(follower)
               or _parent(_parent(p)) == _parent(follower)]
    out["worker"] = (workers or by["workers"])[0]
    return out


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def summarize(raw: Path, top: int, match: str) -> str:
    """The inclusive and self shares of ``raw`` (py-spy's ``--format raw``: a stack and its
    count per line)."""
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_LINE.sub(")", _PATH.sub(r" (\1/", f)) for f in stack.split(";")]
        for name in set(frames):
            incl[name] += n
        own[frames[-1]] += n
    if not total:
        return "  (no samples: the process held the interpreter at no sample)"

    def rows(c: collections.Counter[str]) -> list[str]:
        kept = [(k, v) for k, v in c.most_common() if match in k][:top]
        return [f"  {100 * v / total:5.1f} %  {k[:140]}" for k, v in kept]

    return "\n".join([f"  {total} samples", "  inclusive:", *rows(incl), "  self:",
                      *rows(own)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=400, help="runs per second (default 400)")
    ap.add_argument("--seconds", type=int, default=15, help="sampling time (default 15)")
    ap.add_argument("--roles", nargs="+", choices=ROLES, default=["manager", "follower"])
    ap.add_argument("--top", type=int, default=40, help="functions listed per table")
    ap.add_argument("--match", default="", help="only frames whose text has this")
    ap.add_argument("--keep", help="write the raw stacks (<role>.txt) into this directory")
    ap.add_argument("--hz", type=int, default=200, help="samples per second (default 200)")
    args = ap.parse_args()
    py_spy = _py_spy()
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="clerk-prof-"))
    out.mkdir(parents=True, exist_ok=True)
    stamps = tempfile.mkdtemp(prefix="bench-stamps-")
    n = max(1, args.rate // 10)
    tasks = [clerk.task(STAMP, name=f"t{i:04d}", interval=100, timeout=5000,
                        args={"dir": stamps}) for i in range(n)]
    try:
        with LocalCluster(3, tasks=tasks, workers=2, log_level="warning") as c:
            manager = c.wait_for_manager(timeout=60)
            time.sleep(5)  # every task has run; the followers hold the table
            pids = _pick(clerk_role_pids(c, manager), "manager agent")
            spies = {role: subprocess.Popen(
                [py_spy, "record", "--gil", "-r", str(args.hz), "-d", str(args.seconds),
                 "-f", "raw", "-o", str(out / f"{role}.txt"), "-p", str(pids[role])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for role in args.roles}
            for role, spy in spies.items():
                _, err = spy.communicate(timeout=args.seconds + 60)
                if spy.returncode != 0:
                    print(f"py-spy on {role} failed: {err.decode(errors='replace')[-400:]}",
                          file=sys.stderr)
        print(f"{args.rate} runs/s ({n} tasks every 100 ms, 3 nodes), {args.seconds} s at "
              f"{args.hz} Hz, py-spy --gil; shares of each process's samples")
        for role in args.roles:
            raw = out / f"{role}.txt"
            print(f"\n{role}:")
            print(summarize(raw, args.top, args.match) if raw.is_file() else "  (no profile)")
    finally:
        shutil.rmtree(stamps, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
