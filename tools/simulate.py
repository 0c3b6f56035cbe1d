#!/usr/bin/env python3
"""Run the real cluster cores (:class:`clerk._core.NodeCore`) on a simulated network and
measure elections: how fast one manager is agreed on, how many messages it takes, and how long
two managers coexist.

Everything runs in simulated time on :class:`clerk._simnet.SimNetwork` (seeded delay, jitter,
loss, crashes, pauses, partitions), so a run is reproducible: the same seed gives the same
trace, and the ``trace`` column (a hash of every fault, role change and effect) shows it.

Usage::

    python tools/simulate.py --nodes 1000 --scenario manager-crash --seed 1
    python tools/simulate.py --nodes 3,10,100 --scenario partition
    python tools/simulate.py --scenario all            # every scenario at 3, 10, 100, 1000

Set-up, common to every scenario: nodes ``n000..`` with equal priority (so the rank is the
name: the last node ranks highest), every node lists the three highest-ranked nodes as seeds,
all start at t=0, and the cluster forms (the highest node wins the first election). Then it
runs 0.5 s of steady heartbeats and the scenario injects its faults.

Scenarios (the *reference* is the moment from which ``converge`` is measured):

* ``manager-crash``: the manager is killed; its connections close, so every node gets a
  ``PeerDown`` (ZeroMQ socket-monitor fast path). Reference: the crash.
* ``lowest-detects``: bully's worst case. The manager dies silently (no ``PeerDown`` anywhere)
  and only the *lowest*-ranked node learns of it (one injected ``PeerDown``); it must run the
  election through every node above it. Reference: the crash.
* ``partition``: the manager and 40% of the nodes are cut off from the other 60% for
  ``--partition`` seconds (3 s by default, longer than the member timeout, so both sides
  drop each other from their lists); the majority elects a manager of its own, then the
  network heals and the two managers must merge into one. Reference: the heal.
* ``pause``: the manager is paused (SIGSTOP-like: it keeps its connections, runs nothing) for
  ``--pause`` seconds (2 s); the others notice only its silence and elect a new manager; then
  it resumes and must step down. Reference: the pause.
* ``rolling-restart``: every node, in a seeded random order (the manager wherever it falls), is
  restarted (killed and started again with a new incarnation); before the next one the cluster
  must agree again and every node's member list must show the new incarnation (a real rollout
  waits seconds between pods; without that gap restarts overlap, which ``restart-storm``
  covers). ``converge`` is the slowest wait for agreement; messages are the total.
* ``restart-storm``: for one second, random nodes (the manager among them) are killed and
  started again, some at once, some after up to 0.3 s; then faults stop. Reference: the last
  fault; messages count from the first fault.

Columns:

* ``converge``: simulated time from the reference to a single agreed manager: every live node
  follows the same live manager at the same term (:meth:`SimNetwork.agreed`).
* ``messages``: sent from the first fault until that agreement (lost or undeliverable ones
  included), total and by kind.
* ``2 mgrs``: how long two or more managers were *active* at once, from the first fault to
  the end of the run (exact, updated at every event, not sampled). A paused manager is not
  counted while it is paused: it can send nothing, so it can dispatch nothing; it counts again
  from the instant it resumes until it steps down. ``after ref`` is the part of it after the
  reference (for a partition: after the heal; for a pause, see ``note``).
* ``agree``: after converging the run continues ``--settle`` seconds (2 s); ``yes`` if at the
  end every live node still follows the same manager at the same term as at convergence *and*
  the manager's member list shows every live node alive (current incarnation) and any other
  entry dead.
* ``wall``: real seconds for the scenario, including forming the cluster.

Budget: the member list is replicated to every node whenever it changes, which costs O(N) per
node and O(N^2) per change in total; that is real protocol work, simulated faithfully. So the
rolling restart (N changes) is not run at 1000 nodes by ``all``; you can still ask for it.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clerk._core import Effect, Event, PeerDown, Role  # noqa: E402
from clerk._simnet import SimNetwork, SimNode  # noqa: E402

SCENARIOS = (
    "manager-crash",
    "lowest-detects",
    "partition",
    "pause",
    "rolling-restart",
    "restart-storm",
)
#: Sizes that ``--scenario all`` runs each scenario at (where sensible: see the docstring).
ALL_SIZES: dict[str, tuple[int, ...]] = {
    "manager-crash": (3, 10, 100, 1000),
    "lowest-detects": (3, 10, 100, 1000),
    "partition": (3, 10, 100, 1000),
    "pause": (3, 10, 100, 1000),
    "rolling-restart": (3, 10, 100),
    "restart-storm": (3, 10, 100, 1000),
}
#: Kinds shown in the by-kind message breakdown, with short labels.
KIND_LABELS = {
    "election": "elec",
    "ok": "ok",
    "coordinator": "coord",
    "handover": "hand",
    "join": "join",
    "welcome": "welc",
    "heartbeat": "hb",
    "ack": "ack",
    "leave": "leave",
    "refuse": "refuse",
}


@dataclass
class Result:
    """One row of the table."""

    scenario: str
    nodes: int
    seed: int
    converge_s: float | None
    messages: int
    by_kind: dict[str, int]
    dual_s: float
    dual_after_ref_s: float
    agreed: tuple[str, int] | None
    all_agree: bool
    wall_s: float
    trace_hash: str
    note: str = ""
    formation_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Watch:
    """Tracks, exactly, how long two or more managers are active at once.

    Updated after every event a node handles (an observer on the network) and after every
    fault the scenario injects (``refresh``), so nothing between two samples is missed.
    Active = up, not paused, not stopped, role MANAGER: the same as ``SimNetwork.managers()``.
    """

    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.active: set[str] = set()
        self.since = net.now
        self.dual = 0.0
        self.dual_after: float | None = None  # reference time, once set
        self.dual_after_ref = 0.0
        self.max_managers = 0
        self.manager_changes = 0  # how many times some node became manager
        net.observers.append(self._observe)
        self.refresh()

    def _account(self) -> None:
        now = self.net.now
        if len(self.active) > 1:
            self.dual += now - self.since
            if self.dual_after is not None:
                self.dual_after_ref += now - max(self.since, self.dual_after)
        self.since = now

    def _observe(self, node: SimNode, event: Event, effects: list[Effect]) -> None:
        is_mgr = node.core.role is Role.MANAGER
        if is_mgr == (node.name in self.active):
            return
        self._account()
        if is_mgr:
            self.active.add(node.name)
            self.manager_changes += 1
        else:
            self.active.discard(node.name)
        self.max_managers = max(self.max_managers, len(self.active))

    def refresh(self) -> None:
        """Recount after a fault (crash, pause, resume, restart)."""
        self._account()
        self.active = {n.name for n in self.net.managers()}
        self.max_managers = max(self.max_managers, len(self.active))

    def reference(self) -> None:
        """From now on, also accumulate into ``dual_after_ref``."""
        self._account()
        self.dual_after = self.net.now

    def close(self) -> None:
        self._account()
        self.net.observers.remove(self._observe)


# --- building blocks --------------------------------------------------------------------------


def names_for(n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"n{i:0{width}d}" for i in range(n)]


def build(n: int, seed: int, args: argparse.Namespace) -> tuple[SimNetwork, list[str], float]:
    """Form a cluster of ``n`` nodes; return the network, the names (lowest rank first) and the
    simulated time formation took."""
    net = SimNetwork(seed, delay=args.delay_ms / 1000, jitter=args.jitter_ms / 1000,
                     loss=args.loss)
    names = names_for(n)
    seeds = tuple(f"{name}:7400" for name in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    formed = net.run_until_true(lambda: agreed_all(net), limit=30.0, step=0.01)
    if formed is None:
        raise SystemExit(f"the cluster of {n} did not form within 30 s simulated")
    net.run_for(0.5)
    return net, names, formed


def agreed_all(net: SimNetwork) -> bool:
    """Agreement, and every node up and running (nobody crashed, paused or stopped)."""
    return net.agreed() is not None and len(net.live()) == len(net.nodes)


def members_ok(net: SimNetwork) -> bool:
    """The manager's member list shows every live node alive, with its current incarnation;
    any other entry (a crashed node not yet expired) is marked dead."""
    boss = net.managers()
    if len(boss) != 1:
        return False
    rows = {m.name: m for m in boss[0].core.members}
    live = {n.name: n.core.me.incarnation for n in net.live()}
    for name, incarnation in live.items():
        row = rows.get(name)
        if row is None or not row.alive or row.peer.incarnation != incarnation:
            return False
    return all(not row.alive for name, row in rows.items() if name not in live)


def lists_converged(net: SimNetwork) -> bool:
    """Every live node's member list holds exactly the live nodes, right incarnation, alive."""
    live = {n.name: n.core.me.incarnation for n in net.live()}
    for node in net.live():
        rows = {m.name: m for m in node.core.members}
        if rows.keys() != live.keys():
            return False
        if any(not m.alive or m.peer.incarnation != live[name] for name, m in rows.items()):
            return False
    return True


def converge(net: SimNetwork, limit: float, fine: float = 0.0005) -> float | None:
    """Run until a single manager is agreed on; the simulated time that took, or None."""
    start = net.now
    done = net.run_until_true(lambda: net.agreed() is not None, limit=limit, step=fine)
    return None if done is None else done - start


def trace_hash(net: SimNetwork) -> str:
    digest = hashlib.sha256()
    for at, who, what in net.trace:
        digest.update(f"{at:.9f} {who} {what}\n".encode())
    return digest.hexdigest()[:12]


def finish(
    net: SimNetwork,
    watch: Watch,
    *,
    scenario: str,
    n: int,
    seed: int,
    converge_s: float | None,
    sent_at_converge: Counter[str],
    wall_start: float,
    formation: float,
    args: argparse.Namespace,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Result:
    """Settle, check final agreement, and assemble the row."""
    at_converge = net.agreed()
    if converge_s is not None:
        net.run_for(args.settle)
    watch.close()
    if args.dump_trace:
        os.makedirs(args.dump_trace, exist_ok=True)
        path = os.path.join(args.dump_trace, f"{scenario}-{n}-{seed}.trace")
        with open(path, "w") as fh:
            fh.writelines(f"{at:.6f} {who} {what}\n" for at, who, what in net.trace)
    final = net.agreed()
    ok = (converge_s is not None and final is not None and final == at_converge
          and members_ok(net))
    extra = dict(extra or {})
    extra["max_managers"] = watch.max_managers
    extra["became_manager"] = watch.manager_changes
    return Result(
        scenario=scenario,
        nodes=n,
        seed=seed,
        converge_s=converge_s,
        messages=sum(sent_at_converge.values()),
        by_kind=dict(sent_at_converge),
        dual_s=watch.dual,
        dual_after_ref_s=watch.dual_after_ref,
        agreed=final,
        all_agree=ok,
        wall_s=time.perf_counter() - wall_start,
        trace_hash=trace_hash(net),
        note=note,
        formation_s=formation,
        extra=extra,
    )


# --- scenarios --------------------------------------------------------------------------------


def sc_manager_crash(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, _names, formed = build(n, seed, args)
    boss = net.managers()[0].name
    net.sent.clear()
    watch = Watch(net)
    net.crash(boss)
    watch.refresh()
    watch.reference()
    took = converge(net, args.limit)
    sent = Counter(net.sent)
    return finish(net, watch, scenario="manager-crash", n=n, seed=seed, converge_s=took,
                  sent_at_converge=sent, wall_start=wall, formation=formed,
                  args=args, note=f"{boss} crashed")


def sc_lowest_detects(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, names, formed = build(n, seed, args)
    boss = net.managers()[0]
    lowest = names[0] if names[0] != boss.name else names[1]
    net.sent.clear()
    watch = Watch(net)
    net.crash(boss.name, silent=True)
    net.inject(lowest, PeerDown(boss.address))
    watch.refresh()
    watch.reference()
    took = converge(net, args.limit)
    sent = Counter(net.sent)
    return finish(net, watch, scenario="lowest-detects", n=n, seed=seed, converge_s=took,
                  sent_at_converge=sent, wall_start=wall, formation=formed,
                  args=args, note=f"{boss.name} died silently, only {lowest} told")


def sc_partition(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, names, formed = build(n, seed, args)
    boss = net.managers()[0].name
    others = [x for x in names if x != boss]
    net.rng.shuffle(others)
    minority = [boss, *others[: max(0, (4 * n) // 10 - 1)]]
    majority = [x for x in names if x not in minority]
    net.sent.clear()
    watch = Watch(net)
    split_at = net.now
    net.partition(minority, majority)

    def side_agreed(side: list[str]) -> bool:
        views = {(net.nodes[x].core.manager, net.nodes[x].core.term) for x in side}
        if len(views) != 1:
            return False
        (mgr, _term), = views
        return mgr in side and net.nodes[mgr].core.role is Role.MANAGER

    elected = net.run_until_true(lambda: side_agreed(majority), limit=args.partition,
                                 step=0.0005)
    net.run_until(split_at + args.partition)
    split_ok = side_agreed(majority) and side_agreed(minority)
    net.heal()
    watch.reference()
    took = converge(net, args.limit)
    sent = Counter(net.sent)
    elect_s = "never" if elected is None else f"{elected - split_at:.3f} s"
    note = (f"{len(minority)}/{len(majority)} split for {args.partition:g} s "
            f"(majority elected in {elect_s}{'' if split_ok else ', sides not settled'})")
    return finish(net, watch, scenario="partition", n=n, seed=seed, converge_s=took,
                  sent_at_converge=sent, wall_start=wall, formation=formed,
                  args=args, note=note,
                  extra={"majority_elected_s": None if elected is None else elected - split_at})


def sc_pause(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, _names, formed = build(n, seed, args)
    boss = net.managers()[0].name
    net.sent.clear()
    watch = Watch(net)
    paused_at = net.now
    net.pause(boss)
    watch.refresh()
    watch.reference()
    took = converge(net, args.limit)
    sent = Counter(net.sent)
    new = net.agreed()
    net.run_until(max(net.now, paused_at + args.pause))
    before = watch.dual
    resumed_at = net.now
    net.resume(boss)
    watch.refresh()
    # How long the resumed old manager keeps acting as one.
    down = net.run_until_true(lambda: net.nodes[boss].core.role is not Role.MANAGER,
                              limit=args.limit, step=0.0005)
    step_down = "never" if down is None else f"{(down - resumed_at) * 1000:.1f} ms"
    if n == 1 or new is None:
        note = f"{boss} paused {args.pause:g} s"
    else:
        note = f"{boss} paused {args.pause:g} s; on resume it stepped down after {step_down}"
    rejoined = net.run_until_true(lambda: agreed_all(net), limit=args.limit, step=0.001)
    if rejoined is None:
        note += "; did not rejoin"
    res = finish(net, watch, scenario="pause", n=n, seed=seed, converge_s=took,
                 sent_at_converge=sent, wall_start=wall, formation=formed,
                 args=args, note=note,
                 extra={"step_down_s": None if down is None else down - resumed_at})
    res.dual_after_ref_s = watch.dual - before  # after the resume
    # finish() compared the view after the resume and rejoin with the view after settling,
    # with the resumed node among the live ones; it must also have rejoined at all.
    res.all_agree = res.all_agree and rejoined is not None and len(net.live()) == n
    return res


def sc_rolling_restart(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, names, formed = build(n, seed, args)
    order = list(names)
    net.rng.shuffle(order)
    boss = net.managers()[0].name
    net.sent.clear()
    watch = Watch(net)
    watch.reference()
    waits: list[float] = []
    failed = ""
    for name in order:
        began = net.now
        net.restart(name)
        watch.refresh()
        done = net.run_until_true(lambda: agreed_all(net), limit=args.limit, step=0.0005)
        if done is None:
            failed = name
            break
        waits.append(done - began)
        # Like a real rollout's readiness gap: let the new member list reach everyone first.
        if net.run_until_true(lambda: lists_converged(net), limit=args.limit,
                              step=0.01) is None:
            failed = f"{name} (member lists)"
            break
    sent = Counter(net.sent)
    mean = sum(waits) / len(waits) if waits else 0.0
    note = (f"manager {boss} restarted #{order.index(boss) + 1} of {n}; "
            f"mean wait {mean * 1000:.0f} ms; {watch.manager_changes} takeovers")
    if failed:
        note += f"; no agreement after restarting {failed}"
    return finish(net, watch, scenario="rolling-restart", n=n, seed=seed,
                  converge_s=None if failed else max(waits, default=0.0),
                  sent_at_converge=sent, wall_start=wall, formation=formed,
                  args=args, note=note)


def sc_restart_storm(n: int, seed: int, args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    net, names, formed = build(n, seed, args)
    rng = net.rng
    faults = max(3, min(n // 4, 25))
    events: list[tuple[float, int, str]] = [
        (net.now + rng.uniform(0.0, 1.0), i, "") for i in range(faults)
    ]
    heapq.heapify(events)
    seq = faults
    net.sent.clear()
    watch = Watch(net)
    hit_manager = 0
    last_fault = net.now
    while events:
        at, _, back = heapq.heappop(events)
        net.run_until(max(net.now, at))
        if back:  # a node crashed earlier comes back
            if net.nodes[back].up:
                continue
            net.restart(back)
        else:
            mgrs = [m.name for m in net.managers()]
            victim = mgrs[0] if mgrs and rng.random() < 0.25 else rng.choice(names)
            hit_manager += victim in mgrs
            if rng.random() < 0.5 or not net.nodes[victim].up:
                net.restart(victim)
            else:
                net.crash(victim)
                seq += 1
                heapq.heappush(events, (at + rng.uniform(0.05, 0.3), seq, victim))
        watch.refresh()
        last_fault = net.now
    watch.reference()
    done = net.run_until_true(lambda: agreed_all(net), limit=args.limit, step=0.0005)
    took = None if done is None else done - last_fault
    sent = Counter(net.sent)
    note = (f"{faults} faults in 1 s ({hit_manager} on the manager), "
            f"{watch.manager_changes} takeovers")
    return finish(net, watch, scenario="restart-storm", n=n, seed=seed, converge_s=took,
                  sent_at_converge=sent, wall_start=wall, formation=formed,
                  args=args, note=note)


RUNNERS: dict[str, Callable[[int, int, argparse.Namespace], Result]] = {
    "manager-crash": sc_manager_crash,
    "lowest-detects": sc_lowest_detects,
    "partition": sc_partition,
    "pause": sc_pause,
    "rolling-restart": sc_rolling_restart,
    "restart-storm": sc_restart_storm,
}
# --- output -----------------------------------------------------------------------------------


def fmt_ms(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds * 1000:.1f}"


def fmt_kinds(by_kind: dict[str, int]) -> str:
    parts = [f"{KIND_LABELS.get(k, k)} {v}"
             for k, v in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))]
    return ", ".join(parts)


def table(results: list[Result]) -> str:
    head = ("| scenario | N | converge ms | messages | by kind | 2 mgrs ms | after ref ms "
            "| agree | manager, term | wall s | trace | note |")
    rule = "|" + "|".join(["---"] * 12) + "|"
    lines = [head, rule]
    for r in results:
        who = "none" if r.agreed is None else f"{r.agreed[0]}, {r.agreed[1]}"
        lines.append(
            f"| {r.scenario} | {r.nodes} | {fmt_ms(r.converge_s)} | {r.messages} "
            f"| {fmt_kinds(r.by_kind)} | {fmt_ms(r.dual_s)} | {fmt_ms(r.dual_after_ref_s)} "
            f"| {'yes' if r.all_agree else 'NO'} | {who} | {r.wall_s:.1f} | {r.trace_hash} "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--nodes wants N or N,N,...; got {text!r}") from None
    if not sizes or any(s < 2 for s in sizes):
        raise argparse.ArgumentTypeError("--nodes: every size must be at least 2")
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Simulate Clerk's election on N nodes (the real cores, simulated network).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenarios: " + ", ".join(SCENARIOS) + ", all. See the module docstring.",
    )
    ap.add_argument("--nodes", type=parse_sizes, default=None,
                    help="N or a comma list (default: 10; with --scenario all: 3,10,100,1000 "
                         "where sensible)")
    ap.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="manager-crash")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=0.5, help="one-way delay (0.5)")
    ap.add_argument("--jitter-ms", type=float, default=0.5, help="extra uniform jitter (0.5)")
    ap.add_argument("--loss", type=float, default=0.0, help="message loss probability (0)")
    ap.add_argument("--partition", type=float, default=3.0, help="partition length, s (3)")
    ap.add_argument("--pause", type=float, default=2.0, help="pause length, s (2)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="simulated s to keep running after convergence (2)")
    ap.add_argument("--limit", type=float, default=30.0,
                    help="give up converging after this many simulated s (30)")
    ap.add_argument("--trace-hash", action="store_true",
                    help="also print one line per run: scenario N seed hash (for diffing)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--dump-trace", metavar="DIR",
                    help="write each run's trace to DIR/SCENARIO-N-SEED.trace")
    args = ap.parse_args(argv)
    if not 0.0 <= args.loss < 1.0:
        ap.error("--loss must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    plan: list[tuple[str, int]] = []
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    for name in names:
        if args.nodes is not None:
            sizes = args.nodes
        elif args.scenario == "all":
            sizes = list(ALL_SIZES[name])
        else:
            sizes = [10]
        plan.extend((name, n) for n in sizes)

    results: list[Result] = []
    total = time.perf_counter()
    for name, n in plan:
        res = RUNNERS[name](n, args.seed, args)
        results.append(res)
        print(f"# {name} N={n}: converge {fmt_ms(res.converge_s)} ms, "
              f"{res.messages} messages, agree {'yes' if res.all_agree else 'NO'}, "
              f"wall {res.wall_s:.1f} s", file=sys.stderr, flush=True)
    print(table(results))
    print(f"\nseed {args.seed}, delay {args.delay_ms:g} ms + jitter {args.jitter_ms:g} ms, "
          f"loss {args.loss:g}; total wall {time.perf_counter() - total:.1f} s "
          f"on {os.cpu_count()} CPUs")
    if args.trace_hash:
        for r in results:
            print(f"trace {r.scenario} {r.nodes} {r.seed} {r.trace_hash}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in results], fh, indent=2)
    return 0 if all(r.all_agree for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
