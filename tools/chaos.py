#!/usr/bin/env python
"""Chaos test of a real 5-node Clerk cluster in network namespaces (issue 9). Run as root.

    sudo .venv/bin/python tools/chaos.py [--seconds 240] [--seed N] [--check] [--voters 3]
                                         [--enforce twice,late,...] [--json] [--workdir DIR]

Five real ``python -m clerk.node`` processes (CURVE on, a throw-away cookie; ``--data-dir``
when the node has it) each run in a network namespace of their own (``clk-ch-n1`` ..,
addresses ``10.203.0.1-5``), linked by veth pairs to a bridge in the namespace ``clk-ch-br``
(see ``tools/_chaos_net.py``). They run a ledger task every 200 ms (``tools/_chaos_tasks.py``:
a counter that appends ``(slot, term, node, count, from, due, start)`` to a per-node ledger).

Faults are drawn from ``--seed`` (every kind once, in a shuffled order, then again), until
``--seconds`` have passed (``--faults`` restricts the kinds, e.g. ``--faults pause-manager``
for issue 9's 20 SIGSTOP trials):

* ``isolate``: 1-2 nodes each cut off alone (link down), 2-6 s, then healed;
* ``split``: a 2|3 split (two nodes moved to a second bridge), 2-6 s, then healed;
* ``seed-restart``: a seed cut off, then restarted (SIGTERM or SIGKILL) while cut off, healed;
* ``kill-manager``: SIGKILL of the manager's processes right after a run, restarted 1-3 s later;
* ``pause-manager``: SIGSTOP of the manager's processes for 1-10 s, then SIGCONT;
* ``term-node``: SIGTERM of a random node (graceful leave), started again 1-3 s later;
* ``full-stop-term`` / ``full-stop-kill``: SIGTERM (or SIGKILL) of every node, then all start.

A partition's sides, the faults and their timing go to ``report.json`` with the analysis.

``--voters 3``: quorum mode (issue 10), the first three nodes vote (``--voter`` on every node).
The analysis then also checks that no slot runs twice in *any* period (partitioned included),
no state regresses in any period, no committed update is lost, and a side without a majority
of the voters starts nothing after the cut beyond one already-reserved slot
(``QUORUM_CHECKS``, enforced by default with ``--voters``).

After each fault the tool waits for every node to agree, stably, on one manager (the heal time
of a partition is from the links coming up to that moment), then 1-3 s of quiet. Then it prints
the analysis (rules in ``tools/_chaos_analysis.py``): slots run twice (connected /
partitioned), state regressions, updates lost at each heal and whether the side with more
history won, late runs, missed slots per fault against its failover window, heal times,
unhealed splits, nodes dead on their own, RSS per node. ``--json`` prints it as JSON instead.
With ``--check`` the exit status is 1 when an enforced invariant (``--enforce``, default all of
``CHECKS``) is broken. Exit 2: the host cannot run it (not root, no ``ip netns``); exit 3:
another chaos run holds the machine's lock (``--wait-lock`` waits for it).

Every namespace, link and process is removed at the end, also on Ctrl-C, SIGTERM or an error,
and leftovers of a crashed earlier run (anything named ``clk-ch-*``) are removed at the start.
So is the nodes' temporary directory (``TMPDIR``, ``/tmp/clk-ch-tmp-*``: their socket
directories, which a SIGKILLed node cannot remove; ``tools/_chaos_cluster.py``). The nodes'
logs, the ledgers and ``report.json`` stay in the work directory it prints.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _chaos_analysis import CHECKS, QUORUM_CHECKS, analyse, render, violations  # noqa: E402
from _chaos_cluster import Cluster, now_ms, remove_leftover_tmp  # noqa: E402
from _chaos_net import Net, cleanup, unavailable  # noqa: E402
from _chaos_tasks import INTERVAL_MS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Failover windows (ms) per fault: missed slots beyond ``ceil(window / interval) + 1`` are
#: flagged. A crash is noticed at once (~50 ms takeover), a freeze after the 700 ms silence
#: timeout + 150 ms probe, a cut-off side's election after the same silence; 1 s covers each
#: with room for a loaded 2-core machine, yet an idle of a run's timeout (2 s + 1 s) shows.
WINDOW_MS = 1000
FAULT_WINDOWS: dict[str, float | None] = {
    "isolate": WINDOW_MS, "split": WINDOW_MS, "seed-restart": WINDOW_MS,
    "kill-manager": WINDOW_MS, "pause-manager": WINDOW_MS, "term-node": WINDOW_MS,
    "full-stop-term": None, "full-stop-kill": None,  # the cluster is down on purpose
}
#: How long a cluster may take to agree on one manager after a fault before the tool moves on
#: (a partition not agreed by then is an unhealed split).
SETTLE_TIMEOUT_S = 20.0
#: One chaos run per machine: the namespace names are fixed, and the start-up cleanup of a
#: crashed run's leftovers would tear down a run in progress. Exit status when it is taken.
LOCK_FILE = Path("/run/lock/clk-ch.lock") if Path("/run/lock").is_dir() else Path(
    "/tmp/clk-ch.lock")
EXIT_BUSY = 3
#: A heal may take this long (issue 9, "Done when": heal max <= 2 s).
HEAL_MAX_MS = 2000.0


class Faults:
    """The fault kinds, each acting on the cluster and returning its fault record."""

    def __init__(self, cluster: Cluster, net: Net, rng: random.Random) -> None:
        self.c = cluster
        self.net = net
        self.rng = rng

    def manager(self) -> str | None:
        got = self.c.wait_agreed(now_ms() - 5 * 1000, SETTLE_TIMEOUT_S)
        return None if got is None else got[0]

    def _heal(self, rec: dict[str, Any]) -> dict[str, Any]:
        self.net.heal()
        rec["up"] = now_ms()
        got = self.c.wait_agreed(rec["up"], SETTLE_TIMEOUT_S)
        rec["healed"] = None if got is None else got[1]
        rec["end"] = now_ms()
        return rec

    def isolate(self, rec: dict[str, Any]) -> dict[str, Any]:
        victims = self.rng.sample(self.c.names, self.rng.choice((1, 2)))
        rec["nodes"] = victims
        rec["cut"] = now_ms()
        for v in victims:
            self.net.cut(self.c.index[v])
        rec["sides"] = [[n for n in self.c.names if n not in victims]] + [[v] for v in victims]
        self.c.hold(self.rng.uniform(2, 6))
        return self._heal(rec)

    def split(self, rec: dict[str, Any]) -> dict[str, Any]:
        moved = self.rng.sample(self.c.names, 2)
        rec["nodes"] = moved
        rec["cut"] = now_ms()
        for v in moved:
            self.net.move(self.c.index[v])
        rec["sides"] = [[n for n in self.c.names if n not in moved], moved]
        self.c.hold(self.rng.uniform(2, 6))
        return self._heal(rec)

    def seed_restart(self, rec: dict[str, Any]) -> dict[str, Any]:
        seed = self.rng.choice(self.c.names[:2])
        how = self.rng.choice(("term", "kill"))
        rec["nodes"], rec["how"] = [seed], how
        rec["cut"] = now_ms()
        self.net.cut(self.c.index[seed])
        rec["sides"] = [[n for n in self.c.names if n != seed], [seed]]
        self.c.hold(self.rng.uniform(1, 2))
        if how == "term":
            self.c.terminate([seed])
        else:
            self.c.kill(seed)
        self.c.start(seed)
        self.c.hold(self.rng.uniform(3, 6))
        return self._heal(rec)

    def kill_manager(self, rec: dict[str, Any]) -> dict[str, Any]:
        victim = self.manager()
        if victim is None:
            return rec
        rec["nodes"] = [victim]
        size = self.c.ledger_size()
        deadline = time.monotonic() + 5
        while self.c.ledger_size() == size and time.monotonic() < deadline:
            time.sleep(0.001)  # watching for the next run's line: kill right after a run
        time.sleep(self.rng.uniform(0, 0.02))
        rec["start"] = now_ms()
        self.c.kill(victim)
        self.c.hold(self.rng.uniform(1, 3))
        self.c.start(victim)
        rec["end"] = now_ms()
        return rec

    def pause_manager(self, rec: dict[str, Any]) -> dict[str, Any]:
        victim = self.manager()
        if victim is None:
            return rec
        rec["nodes"], rec["start"] = [victim], now_ms()
        self.c.signal_all(victim, signal.SIGSTOP)
        self.c.down.add(victim)  # stopped on purpose: not expected to answer
        rec["paused_s"] = round(self.rng.uniform(1, 10), 2)
        self.c.hold(rec["paused_s"])
        self.c.down.discard(victim)
        self.c.signal_all(victim, signal.SIGCONT)
        rec["end"] = now_ms()
        return rec

    def term_node(self, rec: dict[str, Any]) -> dict[str, Any]:
        victim = self.rng.choice(self.c.names)
        rec["nodes"] = [victim]
        self.c.terminate([victim])
        self.c.hold(self.rng.uniform(1, 3))
        self.c.start(victim)
        rec["end"] = now_ms()
        return rec

    def full_stop(self, rec: dict[str, Any], kill: bool) -> dict[str, Any]:
        rec["nodes"] = list(self.c.names)
        if kill:
            self.c.kill(*self.c.names)
        else:
            self.c.terminate(self.c.names)
        self.c.hold(1.0)
        for name in self.c.names:
            self.c.start(name)
        rec["end"] = now_ms()
        return rec

    def kinds(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "isolate": self.isolate, "split": self.split, "seed-restart": self.seed_restart,
            "kill-manager": self.kill_manager, "pause-manager": self.pause_manager,
            "term-node": self.term_node,
            "full-stop-term": lambda rec: self.full_stop(rec, kill=False),
            "full-stop-kill": lambda rec: self.full_stop(rec, kill=True),
        }


def run(args: argparse.Namespace, workdir: Path, net: Net) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cluster = Cluster(args.nodes, workdir, args.python, voters=args.voters)
    try:
        net.create()
        for name in cluster.names:
            cluster.start(name)
        cluster.start_probes()
        if cluster.voters and not cluster.data_dirs:
            raise RuntimeError("--voters needs a node with --data-dir (a voter's promises)")
        say(f"chaos: {args.nodes} nodes starting (data dirs: "
            f"{'yes' if cluster.data_dirs else 'no, the node has no --data-dir'}; "
            + (f"quorum mode, voters {', '.join(cluster.voters)})" if cluster.voters
               else "default mode)"))
        if cluster.wait_agreed(0, 60) is None:
            raise RuntimeError("the cluster never agreed on a manager (see the logs)")
        cluster.hold(2.0)
        cluster.sample_rss()
        t0 = now_ms()
        deadline = time.monotonic() + args.seconds
        faults = Faults(cluster, net, rng)
        kinds = faults.kinds()
        order: list[str] = []
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if not order:
                order = sorted(args.kinds)
                rng.shuffle(order)
            kind = order.pop(0)
            rec: dict[str, Any] = {"kind": kind, "start": now_ms(), "nodes": [],
                                   "window_ms": FAULT_WINDOWS[kind]}
            rec = kinds[kind](rec)
            rec.setdefault("end", now_ms())
            if rec["nodes"]:
                records.append(rec)
            else:
                say(f"chaos: {kind} skipped: the nodes did not agree on a manager")
            settled = cluster.wait_agreed(rec["end"], SETTLE_TIMEOUT_S)
            say(f"chaos: {(rec['start'] - t0) / 1000:6.1f}s {kind:<15} "
                f"{','.join(n.split('@')[0] for n in rec['nodes']):<12} "
                + (f"heal {rec['healed'] - rec['up']:.0f} ms " if rec.get("healed") else "")
                + ("UNHEALED " if "up" in rec and rec.get("healed") is None else "")
                + ("" if settled else "(no agreement after it)"))
            cluster.sample_rss()
            cluster.hold(rng.uniform(1, 3))
        cluster.hold(2.0)  # the last runs land in the ledger
        cluster.sample_rss()
        end = now_ms()
        report = analyse(cluster.read_ledger(), records, interval=INTERVAL_MS,
                         late_ms=args.late_ms, heal_max_ms=HEAL_MAX_MS, end=end,
                         deaths=cluster.deaths, rss=cluster.rss, voters=cluster.voters)
        report.update(seed=args.seed, seconds=args.seconds, t0=t0, end=end,
                      faults_log=records, data_dirs=cluster.data_dirs, workdir=str(workdir),
                      load=os.getloadavg()[0], tmpdir=str(cluster.tmp))
        return report
    finally:
        cluster.close()


def take_lock(lock: Any, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=240, help="how long faults go on")
    p.add_argument("--seed", type=int, default=None, help="fault schedule seed (default: new)")
    p.add_argument("--nodes", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--faults", default=",".join(FAULT_WINDOWS), metavar="KIND,...",
                   help="the fault kinds to draw from (default: all): " + ", ".join(
                       FAULT_WINDOWS))
    p.add_argument("--check", action="store_true",
                   help="exit 1 when an enforced invariant is violated")
    p.add_argument("--voters", type=int, default=0, metavar="N",
                   help="quorum mode: the first N nodes vote (default 0: the default mode)")
    p.add_argument("--enforce", default=None,
                   help="comma-separated checks for --check (default: all; with --voters, "
                        "the quorum checks too): " + ", ".join(
                       f"{k} ({v})" for k, v in {**CHECKS, **QUORUM_CHECKS}.items()))
    p.add_argument("--late-ms", type=float, default=INTERVAL_MS,
                   help="a run starting more than this after its due time is late "
                        "(default: one interval, the node's own staleness rule)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--workdir", help="where logs, ledgers and report.json go (default: new "
                                     "temporary directory)")
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help=f"wait this long for another chaos run to finish (else exit "
                        f"{EXIT_BUSY})")
    p.add_argument("--analyse", metavar="WORKDIR",
                   help="run nothing: analyse an earlier run's work directory again (its "
                        "ledgers and report.json), e.g. with another --late-ms")
    p.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                   help="the nodes' python (default: the project's .venv)")
    args = p.parse_args(argv)
    if not 0 <= args.voters <= args.nodes:
        p.error(f"--voters: from 0 to the {args.nodes} nodes")
    known = {**CHECKS, **QUORUM_CHECKS}
    if args.enforce is None:
        args.enforce = ",".join([*CHECKS, *(QUORUM_CHECKS if args.voters else ())])
    enforced = [c for c in args.enforce.split(",") if c]
    unknown = [c for c in enforced if c not in known]
    if unknown:
        p.error(f"--enforce: unknown checks {unknown}; known: {', '.join(known)}")
    args.kinds = [k for k in args.faults.split(",") if k]
    if not args.kinds or any(k not in FAULT_WINDOWS for k in args.kinds):
        p.error(f"--faults: choose from {', '.join(FAULT_WINDOWS)}")
    if args.analyse:
        return finish(reanalyse(Path(args.analyse), args.late_ms), args, enforced,
                      Path(args.analyse))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    why = unavailable()
    if why is not None:
        say(f"chaos: cannot run here: {why}")
        return 2
    lock = open(LOCK_FILE, "a")  # noqa: SIM115 (held until exit)
    if not take_lock(lock, args.wait_lock):
        say(f"chaos: another chaos run holds {LOCK_FILE}; not starting")
        return EXIT_BUSY
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clerk-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"chaos: seed {args.seed}, {args.seconds:g} s of faults; logs, ledgers and "
        f"report in {workdir}")
    for line in [*cleanup(), *remove_leftover_tmp()]:
        say(f"chaos: removed a leftover {line}")
    old = signal.signal(signal.SIGTERM, _on_term)
    # Also when started with SIGINT ignored (a background job of a script): Ctrl-C cleans up.
    signal.signal(signal.SIGINT, _on_term)
    net = Net(args.nodes)
    try:
        report = run(args, workdir, net)
    except KeyboardInterrupt:
        say("chaos: interrupted")
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        say(f"chaos: failed: {exc}")
        return 1
    finally:
        # Cleanup must finish: a second Ctrl-C or SIGTERM now would leave namespaces behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        removed = cleanup()
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        say(f"chaos: cleaned up {len(removed)} namespaces/links; logs in {workdir}")
    return finish(report, args, enforced, workdir)


def reanalyse(workdir: Path, late_ms: float) -> dict[str, Any]:
    """The report of an earlier run, computed again from its work directory."""
    old = json.loads((workdir / "report.json").read_text())
    ledger = [json.loads(line) for path in sorted((workdir / "ledger").glob("*.jsonl"))
              for line in path.read_text().splitlines() if line.strip()]
    report = analyse(ledger, old["faults_log"], interval=INTERVAL_MS, late_ms=late_ms,
                     heal_max_ms=old["heal_max_ms"], end=old["end"], deaths=old["deaths"],
                     rss=old["rss_mb"], voters=old.get("voters", ()))
    report.update({k: old[k] for k in ("seed", "seconds", "t0", "end", "faults_log",
                                       "data_dirs", "workdir", "load")})
    return report


def finish(report: dict[str, Any], args: argparse.Namespace, enforced: list[str],
           workdir: Path) -> int:
    broken = violations(report, enforced)
    report["violations"], report["enforced"] = broken, enforced
    (workdir / "report.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        mode = (f"quorum mode ({len(report['voters'])} voters)" if report.get("voters")
                else "default mode")
        print(f"seed {report['seed']}, {report['seconds']:g} s, {report['faults']} faults, "
              f"interval {INTERVAL_MS} ms, data dirs {'on' if report['data_dirs'] else 'off'}, "
              f"{mode}, load {report['load']:.1f}")
        print(render(report, report["t0"]))
        for line in broken:
            print(f"VIOLATED {line}")
        if not broken:
            print(f"enforced checks hold: {', '.join(enforced) or '(none)'}")
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
