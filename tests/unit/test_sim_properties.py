"""Property tests: the real cores on the simulated network under random fault schedules.

Hypothesis draws a cluster of 3-7 nodes, a seed and a schedule of faults (crash, restart,
pause, resume, graceful leave, partition, heal, message loss, and late EXECUTEs from every
claim any manager ever held). The invariants are checked after *every* event a node handles, through
``SimNetwork.observers``, not only at the end:

* terms never decrease on a node (its term, the highest term it has seen, and the highest claim
  it has seen), for as long as it lives: a restart is a new process that starts from nothing;
* a node that follows a manager (or is one) follows a claim at least as high as the highest it
  has seen: a stale claim is never followed;
* fencing: a node delivers an EXECUTE upwards only if its claim was at least the highest claim
  the node had seen when it arrived; a stale one is refused.

Then the faults stop: the network heals, loss goes to 0, every paused node resumes (and
delivers what it had queued, e.g. a LEAVE). If the live nodes then cannot find each other
(:func:`islands`: non-seeds restarted while every seed is down know nobody's address; the
simulator has no data directory to remember members by), the highest seed that is down is
brought back, through which they must merge (``test_sim_islands``). Within ``CONVERGE_BOUND``
simulated seconds every live node must agree on one live manager and one term, with the
manager listing every live node as a member, and that agreement must then hold for
``STABLE_FOR`` seconds with nobody else becoming manager (no flapping). Agreements that do not
hold (a resumed manager's graceful leave hands over with a new term a millisecond later) may
come and go before that, within the bound. The bound: a silent manager is suspected after
0.7 s and an election takes a few hundred ms, but the slowest path is a partition merge, which
relies on the managers' probes (every 1 s) reaching members they dropped after the 2 s member
timeout; 10 s leaves room for a couple of those rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clerk._claims import LONE_TERM
from clerk._core import Deliver, Effect, Event, NodeCore, Received, Role
from clerk._messages import Claim, Execute
from clerk._simnet import SimNetwork, SimNode
from tests.unit.simdepth import examples

CONVERGE_BOUND = 10.0
STABLE_FOR = 1.0
ROOT = Path(__file__).resolve().parents[2]


def names_for(n: int) -> list[str]:
    return [f"n{i}" for i in range(n)]


def build(n: int, seed: int) -> SimNetwork:
    """``n`` nodes, every one seeded with the three highest; formed and agreed."""
    net = SimNetwork(seed)
    names = names_for(n)
    seeds = tuple(f"{x}:7400" for x in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == n,
                              limit=10.0, step=0.01) is not None, net.summary()
    return net


@dataclass
class Invariants:
    """Observer that checks the per-event invariants; collects violations (and counts)."""

    net: SimNetwork
    #: per node: (incarnation, term, max_term, highest key) as last observed
    last: dict[str, tuple[str, int, int, tuple[int, int, str] | None]] = field(
        default_factory=dict)
    #: every claim any node ever held as manager: (name, incarnation, term)
    claims: set[tuple[str, str, int]] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    delivered: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        for node in self.net.nodes.values():
            self._remember(node.name, node.core)
            if node.core.role is Role.MANAGER:
                self.claims.add((node.name, node.core.me.incarnation, node.core.term))
        self.net.observers.append(self)

    def _remember(self, name: str, core: NodeCore) -> None:
        hk = core.highest.key if core.highest is not None else None
        self.last[name] = (core.me.incarnation, core.term, core.max_term, hk)

    def __call__(self, node: SimNode, event: Event, effects: list[Effect]) -> None:
        core = node.core
        now = self.net.now
        inc, term, max_term, hk = self.last.get(node.name, ("", 0, 0, None))
        if inc != core.me.incarnation:  # a restart: a new process, nothing to compare with
            term, max_term, hk = 0, 0, None
        new_hk = core.highest.key if core.highest is not None else None
        # A lone claim (clerk._claims, "Lone claims": a node never part of a cluster, with no
        # live member, e.g. one that followed a claim on a relay's word and never heard from
        # its holder) is at term 0 on purpose: below every claim made with members, the one
        # it saw included, so that it follows that claim's holder when they meet.
        lone = (core.role is Role.MANAGER and core.term == LONE_TERM and not core.joined)
        if (core.term < term and not lone) or core.max_term < max_term:
            self.violations.append(f"{now:.4f} {node.name}: term went down "
                                   f"({term}->{core.term}, max {max_term}->{core.max_term})")
        if hk is not None and (new_hk is None or new_hk < hk):
            self.violations.append(f"{now:.4f} {node.name}: highest claim went down "
                                   f"({hk} -> {new_hk})")
        if core.role in (Role.FOLLOWER, Role.MANAGER):
            claim = core.manager_claim
            if claim is None or (new_hk is not None and claim.key < new_hk and not lone):
                self.violations.append(f"{now:.4f} {node.name}: {core.role} of claim "
                                       f"{claim} below the highest seen {new_hk}")
        if core.role is Role.MANAGER:
            self.claims.add((node.name, core.me.incarnation, core.term))
        if isinstance(event, Received) and isinstance(event.msg, Execute):
            msg = event.msg
            key = Claim(msg.term, msg.sender.priority, msg.sender.name, msg.sender.address).key
            passed = any(isinstance(e, Deliver) and e.msg is msg for e in effects)
            if passed:
                self.delivered += 1
                if hk is not None and key < hk:
                    self.violations.append(f"{now:.4f} {node.name}: delivered EXECUTE of "
                                           f"stale claim {key} (highest seen {hk})")
            else:
                self.refused += 1
        self._remember(node.name, core)


def dispatch(net: SimNetwork, inv: Invariants, run: int) -> None:
    """EXECUTE from every claim ever held (current and stale) by a process still running, to
    every node: what a manager that has not yet heard of a newer term would send. (A process
    that crashed or left sends nothing; its in-flight messages land within the delay.)"""
    addresses = [n.address for n in net.nodes.values()]
    for name, incarnation, term in sorted(inv.claims):
        node = net.nodes[name]
        sender = node.core.me
        if sender.incarnation != incarnation:
            continue
        for to in addresses:
            if to != node.address:
                net.send(name, to, Execute(sender, term, "t", f"r{run}", run, None, 1000))


def listed(net: SimNetwork) -> bool:
    """The manager lists every live node as alive, with its current incarnation."""
    boss = net.managers()
    if len(boss) != 1:
        return False
    rows = {m.name: m for m in boss[0].core.members}
    for node in net.live():
        row = rows.get(node.name)
        if row is None or not row.alive or row.peer.incarnation != node.core.me.incarnation:
            return False
    return True


def knows(node: SimNode) -> set[str]:
    """Every address ``node`` may ever send to: its seeds, its member list, the members it
    lost as a manager or an ex-manager (probed), the members its data directory recorded
    (JOINed), the manager it follows. A node learns of another only from a message: two
    nodes not linked by these, directly or through others, never hear of each other (short
    of a message already in flight, which at worst brings a seed back needlessly)."""
    core = node.core
    out = {*core.seeds, *(row.peer.address for row in core.members), *core._lost,
           *core._orphans, *core._awaited.values()}
    if core._claim is not None:
        out.add(core._claim.address)
    return out


def islands(net: SimNetwork) -> list[set[str]]:
    """The live nodes (those not leaving) grouped by what they know: two nodes are on one
    island if a chain of :func:`knows` links them, either way (the one sent to learns the
    sender). Nodes on different islands never exchange a message: e.g. two nodes that are
    not seeds, restarted (a new process knows only its seeds; the simulator has no data
    directory to remember members by) while every seed is down."""
    live = [x for x in net.live() if x.core.role is not Role.LEAVING]
    by_address = {x.address: x.name for x in live}
    island = {x.name: {x.name} for x in live}
    for node in live:
        for addr in knows(node):
            other = by_address.get(addr)
            if other is not None and island[other] is not island[node.name]:
                merged = island[node.name] | island[other]
                for name in merged:
                    island[name] = merged
    return list({id(group): group for group in island.values()}.values())


OPS = ("crash", "restart", "pause", "resume", "partition", "heal", "loss", "dispatch", "leave")


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, int, list[tuple[float, str, object]]]:
    n = draw(st.integers(3, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    steps: list[tuple[float, str, object]] = []
    for _ in range(draw(st.integers(1, 12))):
        gap = draw(st.sampled_from((0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 1.5, 2.5)))
        op = draw(st.sampled_from(OPS))
        arg: object
        if op in ("crash", "restart", "pause", "resume", "leave"):
            arg = draw(st.integers(0, n - 1))
        elif op == "partition":
            arg = tuple(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        elif op == "loss":
            arg = draw(st.sampled_from((0.0, 0.05, 0.2, 0.5)))
        else:
            arg = None
        steps.append((gap, op, arg))
    return n, seed, steps


def run_schedule(n: int, seed: int, steps: list[tuple[float, str, object]]) -> None:
    net = build(n, seed)
    names = names_for(n)
    inv = Invariants(net)
    run = 0
    for gap, op, arg in steps:
        net.run_for(gap)
        if op == "crash":
            net.crash(names[arg])  # type: ignore[index, call-overload]
        elif op == "restart":
            net.restart(names[arg])  # type: ignore[index, call-overload]
        elif op == "pause":
            net.pause(names[arg])  # type: ignore[index, call-overload]
        elif op == "resume":
            net.resume(names[arg])  # type: ignore[index, call-overload]
        elif op == "partition":
            groups: dict[int, list[str]] = {}
            for name, g in zip(names, arg, strict=True):  # type: ignore[call-overload]
                groups.setdefault(g, []).append(name)
            net.partition(*groups.values())
        elif op == "heal":
            net.heal()
        elif op == "leave":
            net.leave(names[arg])  # type: ignore[index, call-overload]
        elif op == "loss":
            net.loss = arg  # type: ignore[assignment]
        else:
            run += 1
            dispatch(net, inv, run)
    # Faults stop: connected, lossless, nobody paused (crashed nodes stay down, but see islands).
    net.heal()
    net.loss = 0.0
    for name in names:
        net.resume(name)
    if not any(n.core.role is not Role.LEAVING for n in net.live()):
        net.restart(names[0])  # everyone crashed or is leaving: bring one back
    if len(islands(net)) > 1:
        # The survivors cannot find each other (see islands): no protocol can merge them,
        # so bring back the highest seed that is down, which every node probes as a lone
        # manager: the islands must then merge through it (README, "seeds restarted
        # together form a cluster of their own until a probe merges them").
        down = [x for x in reversed(names[-3:]) if not net.nodes[x].up]
        if down:
            net.restart(down[0])
    stop = net.now
    run += 1
    dispatch(net, inv, run)  # stale claims meet the survivors once more
    # Converged = agreed (and the manager lists every live node) and still the same view
    # STABLE_FOR later, checked every 5 ms; the first such agreement must come within the bound.
    while True:
        left = stop + CONVERGE_BOUND - net.now
        done = net.run_until_true(lambda: net.agreed() is not None and listed(net),
                                  limit=max(left, 0.0), step=0.005)
        assert done is not None, (
            f"no agreement {CONVERGE_BOUND} s after the faults stopped: "
            + "; ".join(f"{x.name}={x.core.role}/{x.core.manager}/{x.core.term}"
                        for x in net.live())
        )
        view = net.agreed()
        assert view is not None
        known = inv.claims | {(view[0], net.nodes[view[0]].core.me.incarnation, view[1])}
        run += 1
        dispatch(net, inv, run)
        # A member may still be dropped after the faults stop: one whose ACKs the loss ate
        # for the silence timeout just before, as idle members ACK every 0.5 s (seed 243:
        # dropped 0.49 s after the loss ended, back 0.5 s later). Not stable yet: wait again,
        # within the same bound.
        changed = net.run_until_true(lambda v=view: (  # type: ignore[misc]
                                         net.agreed() != v or not listed(net)),
                                     limit=STABLE_FOR, step=0.005)
        if changed is None:
            break
    assert inv.claims <= known, f"a new manager after agreeing on {view}: {inv.claims - known}"
    assert listed(net)
    assert not inv.violations, "\n".join(inv.violations[:20])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
# Found by CI's random search after lone claims: a restarted n4 followed n5's claim (term 1)
# on a relay's word, never heard from n5 under 50 % loss, and elected itself alone at term 0.
@example((6, 243, [(0.0, "loss", 0.5), (0.0, "dispatch", None), (0.0, "crash", 0),
                   (0.0, "restart", 4), (0.2, "crash", 5)]))
@example((7, 243, [(0.0, "leave", 6), (0.0, "loss", 0.5), (0.01, "dispatch", None),
                   (0.0, "partition", (0, 0, 1, 0, 1, 0, 1)), (0.2, "heal", None),
                   (2.5, "heal", None)]))
# Found by CI's random search: n0 and n1 restarted (knowing only their seeds), then every
# seed (n2-n4) crashed: two lone managers at term 0 that never exchanged a message. Not a
# protocol fault (neither knows the other's address); the property now brings a seed back.
@example((5, 0, [(0.0, "restart", 0), (0.0, "crash", 1), (0.0, "crash", 1), (0.0, "crash", 3),
                 (0.0, "crash", 4), (0.0, "restart", 1), (0.0, "heal", None),
                 (0.0, "crash", 2)]))
def test_random_faults_converge_and_keep_invariants(schedule) -> None:
    n, seed, steps = schedule
    run_schedule(n, seed, steps)


def test_fencing_refuses_a_paused_managers_execute() -> None:
    """The scenario fencing exists for: a paused manager wakes up and dispatches at once,
    before it learns of the new manager; nodes that have heard of the newer term refuse."""
    net = build(5, 7)
    inv = Invariants(net)
    old = net.managers()[0]
    old_term = old.core.term
    net.pause(old.name)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=3.0) is not None
    new_term = net.agreed()[1]  # type: ignore[index]
    assert new_term > old_term
    # It wakes and dispatches before reading its mailbox (which holds the news).
    node = net.nodes[old.name]
    node.paused = False
    for other in net.nodes.values():
        if other is not old:
            net.send(old.name, other.address,
                     Execute(old.core.me, old_term, "t", "late", 1, None, 1000))
    node.paused = True
    net.run_for(0.01)
    net.resume(old.name)
    net.run_for(1.0)
    assert inv.refused == 4 and inv.delivered == 0
    assert not inv.violations
    assert net.agreed() is not None and net.agreed()[1] == new_term  # type: ignore[index]


def test_same_seed_same_trace() -> None:
    def trace(seed: int) -> list[tuple[float, str, str]]:
        net = build(6, seed)
        net.crash("n5")
        net.run_for(0.5)
        net.partition(["n0", "n1"])
        net.run_for(2.5)
        net.heal()
        net.restart("n5")
        net.run_for(2.0)
        return net.trace

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_simulator_trace_is_independent_of_hash_seed() -> None:
    """Same seed, separate processes with different string hashing: same trace hash. (Set
    iteration order depends on PYTHONHASHSEED; the network must never let it leak in.)"""
    hashes = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "simulate.py"), "--nodes", "10",
             "--scenario", "restart-storm", "--seed", "5", "--settle", "0.2", "--trace-hash"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert out.returncode == 0, out.stderr + out.stdout
        line = [x for x in out.stdout.splitlines() if x.startswith("trace ")]
        assert len(line) == 1
        hashes.add(line[0])
    assert len(hashes) == 1, hashes


@pytest.mark.parametrize("scenario", ["manager-crash", "lowest-detects", "partition", "pause",
                                      "rolling-restart", "restart-storm"])
def test_simulate_scenarios_agree(scenario: str) -> None:
    """Every scenario of tools/simulate.py ends with one agreed manager (small N, quick)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import simulate  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "tools"))
    args = simulate.parse_args(["--nodes", "3,10", "--scenario", scenario, "--settle", "0.5"])
    for n in (3, 10):
        res = simulate.RUNNERS[scenario](n, 2, args)
        assert res.all_agree, res
        assert res.converge_s is not None and res.converge_s < 2.0, res
