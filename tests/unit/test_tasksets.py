"""Member task sets by reference (clerk._tasksets): the member list carries digests to the nodes
that read them, each set is fetched once, and older builds still get the entries."""

import clerk
from clerk._codec import encode
from clerk._core import Send, Start
from clerk._deploy import announce
from clerk._messages import Heartbeat, TasksQuery, TasksReply, Welcome
from clerk._tasksets import (
    DIGEST_MARK,
    FETCH_RETRY,
    TaskSets,
    base_of,
    digest_of,
    parts_of,
    split,
    with_started,
)
from tests.unit.corenet import Net, addr

DEFS = [clerk.task("clerk.examples:Tally", name=f"big.tasks:Poll{i:05d}", interval=1000,
                   args={"n": i} if i < 5 else None) for i in range(400)] + [
    clerk.task("clerk.examples:Tally", name="odd", interval=500, timezone="Europe/Paris",
               args={"s": 1.5, "t": {"t": "\"t\":", "s": 2}}, catch_up="last")]


def entries(started: float) -> tuple[str, ...]:
    return announce(DEFS, started)


def test_members_of_one_build_share_one_set_and_get_their_own_entries_back() -> None:
    a, b = entries(1000.25), entries(2000.5)
    assert a != b  # every entry with parameters carries its member's start time
    da, base_a, sa = split(a)
    db, base_b, sb = split(b)
    assert da == db and base_a == base_b and (sa, sb) == (1000.25, 2000.5)
    assert with_started(base_a, sa) == a and with_started(base_b, sb) == b
    sets = TaskSets()
    sets.add(da, base_a)
    assert sets.entries(da, sb) == b and sets.entries(da, sb) is sets.entries(da, sb)
    assert sets.entries(db[::-1], sb) is None
    # entries that do not split exactly are a set as they are
    odd = ("x", "y\x1f{\"s\":1,\"t\":\"m:f\"}", "z\x1f{\"s\":2,\"t\":\"m:f\"}")
    assert base_of(odd) == (odd, None)
    assert base_of(("x", "y")) == (("x", "y"), None)
    parts = parts_of(base_a, 1000)
    assert len(parts) > 1 and tuple(e for p in parts for e in p) == base_a
    assert digest_of(base_a) != digest_of(base_a[:-1])


def new(name: str) -> str:
    return f"{name}-1{DIGEST_MARK}"


def test_a_joiner_gets_digests_and_fetches_only_the_sets_it_lacks() -> None:
    net = Net()
    m = net.node("m", priority=9, tasks=entries(1.0), incarnation=new("m"))
    b = net.node("b", seeds=["m"], tasks=entries(2.0), incarnation=new("b"))
    other = tuple(f"only.b:{i}" for i in range(3))
    c = net.node("c", seeds=["m"], tasks=other, incarnation=new("c"))
    net.advance(0.5)
    mark = net.mark()
    d = net.node("d", seeds=["m"], tasks=entries(4.0), incarnation=new("d"))
    net.advance(0.5)
    welcome = net.sends(m, Welcome, to=d, after=mark)[-1]
    assert all(i.tasks == () and i.digest for i in welcome.members)
    assert len(encode(welcome)[2]) < 2000  # four members of 400 tasks each: digests only
    # d runs m's and b's build: it asks only for c's set, once, and gets it
    queries = net.sends(d, TasksQuery, after=mark)
    assert [q.digest for q in queries] == [split(other)[0]]
    assert net.sends(m, TasksReply, to=d, after=mark)
    for core in (m, b, c, d):
        rows = {r.name: r for r in core.members}
        assert rows["m"].tasks == entries(1.0) and rows["b"].tasks == entries(2.0)
        assert rows["c"].tasks == other and rows["d"].tasks == entries(4.0)
        assert all(r.want is None for r in rows.values())


def test_an_older_build_gets_the_entries_and_a_forged_set_is_refused() -> None:
    net = Net()
    m = net.node("m", priority=9, tasks=entries(1.0), incarnation=new("m"))
    old = net.node("o", seeds=["m"], tasks=entries(2.0), incarnation="o-1")
    mark = net.mark()
    net.node("b", seeds=["m"], tasks=("x", "y"), incarnation=new("b"))
    net.advance(0.5)
    lists = [h.members for h in net.sends(m, Heartbeat, to=old, after=mark)
             if h.members is not None]
    assert lists and all(i.digest is None for ms in lists for i in ms)
    assert {r.name: r.tasks for r in old.members}["b"] == ("x", "y")
    # a reply nobody asked for, and one whose parts do not make the digest, change nothing
    sets = m.members.sets
    assert sets.part("00" * 16, 1, 1, ("x",)) == "unasked"
    assert sets.due("11" * 16, net.now) == 0
    assert sets.part("11" * 16, 1, 1, ("x",)) == "digest" and "11" * 16 not in sets.sets


def test_a_set_that_never_arrives_is_asked_again_of_each_holder_in_turn() -> None:
    net = Net()
    m = net.node("m", priority=9, tasks=("a",), incarnation=new("m"))
    net.node("b", seeds=["m"], tasks=("b1", "b2"), incarnation=new("b"))
    net.node("c", seeds=["m"], tasks=("b1", "b2"), incarnation=new("c"))
    net.advance(0.5)
    lost = net.node("d", seeds=["m"], tasks=("d",), incarnation=new("d"), start=False)
    # every reply to d is lost until the heal
    original = net.deliver

    def deliver(src, send):
        if isinstance(send.msg, TasksReply) and send.to == addr("d"):
            return
        original(src, send)

    net.deliver = deliver  # type: ignore[method-assign]
    mark = net.mark()
    net.do(lost, Start())
    net.run()
    net.advance(3.5)
    asked = [e.to for e in net.effects(lost, Send, after=mark) if isinstance(e.msg, TasksQuery)]
    assert len(asked) >= 3 and set(asked) >= {addr("m"), addr("b"), addr("c")}
    row = lost.members.get("b")
    assert row is not None and row.tasks == () and row.want is not None
    net.deliver = original  # type: ignore[method-assign]
    net.advance(1.5)
    assert lost.members.get("b").tasks == ("b1", "b2")  # type: ignore[union-attr]
    assert not lost.members.wanting or not lost.members.wanted()
    assert m.members.get("d").tasks == ("d",)  # type: ignore[union-attr]


def test_sets_nobody_uses_any_more_are_let_go() -> None:
    from clerk._membership import MemberTable
    from clerk._messages import Peer
    from clerk._tasksets import KEEP_SETS

    me = Peer("m", "m:1", "m-1+d")
    table = MemberTable(me, ("a",), 0.0)
    peer = Peer("b", "b:1", "b-1+d")
    for i in range(100):  # b re-announces 100 times (deploys): each set digested once
        table.admit(peer, (f"t{i}",), float(i), 2.0)
        table.infos(digests=True)
    assert len(table.sets.sets) <= 2 + KEEP_SETS + 1
    assert table.sets.sets[table.form(table.get("b"))[0]] == ("t99",)  # type: ignore[arg-type]
    # a forged reply cannot make a fetch hold more than MAX_PARTS parts
    assert table.sets.due("ff" * 16, 0.0) == 0
    assert table.sets.part("ff" * 16, 1, 10_000, ("x",)) == "parts"


def test_a_thirtieth_node_joins_a_10000_task_cluster() -> None:
    """30 cores announcing 10,000 tasks each, every message through the real codec (over
    1 MiB it raises): each joins, and every node holds every member's entries. Before, the
    list of 5 such members was over the limit."""
    defs = [clerk.task("clerk.examples:Tally", name=f"myapp.tasks:Poll{i:05d}", interval=60_000,
                       args={"n": i}) for i in range(10_000)]
    net = Net()
    cores = [net.node("n00", priority=9, tasks=announce(defs, 1.0), incarnation=new("n00"))]
    for i in range(1, 30):
        cores.append(net.node(f"n{i:02d}", seeds=["n00"], tasks=announce(defs, 1.0 + i),
                              incarnation=new(f"n{i:02d}")))
        net.advance(0.2)
    net.advance(1.0)
    assert len(cores[0].members) == 30
    for core in cores[::7]:
        rows = {r.name: r for r in core.members}
        assert len(rows) == 30 and all(r.want is None for r in rows.values())
        assert all(rows[c.me.name].tasks == c.tasks for c in cores)
    assert not any(isinstance(e.msg, TasksQuery) for c in cores for e in net.effects(c, Send))


def test_the_shortcut_for_announced_entries_cuts_what_the_general_path_cuts() -> None:
    from unittest import mock

    from clerk import _tasksets

    defs = [clerk.task("clerk.examples:Tally", name=f"t{i}", interval=1000, args={"k": i})
            for i in range(20)]
    cases = [
        announce(defs, 1234.5), announce(defs, 1e-7), announce(defs, -3.0),
        announce(defs, 1e300), [*announce(defs, 5.0), "bare-name"],
        [*announce(defs[:3], 5.0), *announce(defs[3:6], 6.0)],  # two start times
        [e.replace('"s":5.0', '"s":5.00') for e in announce(defs, 5.0)],  # not json.dumps'
        ["bare", "names"], [],
        [e.replace('"s":5.0,', "") for e in announce(defs, 5.0)],  # no start time
    ]
    for entries in cases:
        with mock.patch.object(_tasksets, "_base_as_announced", lambda e: None):
            general = base_of(entries)
        assert base_of(entries) == general, entries[:2]
        assert with_started(*general) == tuple(entries)
    assert _tasksets._base_as_announced(announce(defs, 1234.5)) is not None


def test_a_sets_parts_are_cut_once_and_let_go_with_it() -> None:
    defs = [clerk.task("clerk.examples:Tally", name=f"t{i}", interval=1000) for i in range(50)]
    digest, base, _ = split(announce(defs, 7.0))
    sets = TaskSets()
    assert sets.parts(digest) is None
    sets.add(digest, base)
    first = sets.parts(digest)
    assert first == parts_of(base) and sets.parts(digest) is first
    sets.trim([])
    assert sets.parts(digest) is None


def test_a_set_held_while_it_was_being_fetched_is_a_look_due_now() -> None:
    # Our own set, announced after rows began waiting for it (a node whose workers became
    # ready after its WELCOME): the fetch ends, and the rows must take it at the next look
    # (clerk._setfetch.fetch_sets), as no reply will come for it and no retry is left.
    sets = TaskSets()
    assert sets.due("d1", 0.0) == 0 and sets.next_retry() == FETCH_RETRY
    sets.fresh = False
    sets.add("d1", ("a", "b"))
    assert "d1" not in sets.fetches and sets.fresh and sets.next_retry() == float("-inf")
    fresh = TaskSets()
    fresh.add("d2", ("c",))  # held with no fetch under way: nothing to look at
    assert not fresh.fresh
