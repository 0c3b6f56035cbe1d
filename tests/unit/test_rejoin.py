"""Restarts (:mod:`clerk._joining`, "Restarts"): a node restarted from a data directory that
recorded other members waits for them, at most ``rejoin_timeout``, before it runs alone; the
data directory records them (:mod:`clerk._store`); the key is validated like the others."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import clerk
from clerk import ConfigError, load_config
from clerk._config import REJOIN_TIMEOUT_MS
from clerk._core import NodeCore, Received, Role, Send, Start, Tick
from clerk._messages import Claim, Election, Join, MemberInfo, Peer, Welcome
from clerk._store import Store
from clerk._timings import Timings
from clerk.node import build_parser, config_from_args

T = Timings()


def _core(rejoin: dict[str, str] | None, seeds: tuple[str, ...] = ("b:7400", "c:7400"),
          timings: Timings = T, now: float = 100.0) -> tuple[NodeCore, list]:
    core = NodeCore(Peer("a", "a:7400", "a-1", 0), now=now, rng=random.Random(1),
                    seeds=seeds, timings=timings)
    if rejoin is not None:
        core.rejoin(rejoin)
    return core, core.handle(Start(), now)


def _joins(effects: list) -> list[str]:
    return sorted(e.to for e in effects if isinstance(e, Send) and isinstance(e.msg, Join))


def _tick(core: NodeCore, now: float) -> list:
    return core.handle(Tick(), now)


def _welcome(name: str) -> Received:
    return Received(Welcome(Peer(name, f"{name}:7400", f"{name}-2", 0), 0, None,
                            (MemberInfo(name, f"{name}:7400", f"{name}-2", 0, True),), 1))


def test_without_recorded_members_a_node_elects_at_the_join_timeout_as_before() -> None:
    core, _ = _core(None)
    assert core.next_deadline() == 100.0 + T.join_timeout
    _tick(core, 100.0 + T.join_timeout)
    assert core.role is not Role.JOINING  # a candidate (then the manager of one)


def test_a_restarted_node_waits_for_its_recorded_members_then_runs_alone() -> None:
    core, out = _core({"b": "b:7400", "d": "d:7400"})
    assert _joins(out) == ["b:7400", "c:7400", "d:7400"]  # seeds and recorded members
    _tick(core, 100.0 + T.join_timeout)
    assert core.role is Role.JOINING  # not alone from its copy after 0.5 s
    out = _tick(core, 100.0 + T.join_retry)
    assert "d:7400" in _joins(out)  # keeps JOINing them
    assert core.next_deadline() <= 100.0 + T.rejoin_timeout
    _tick(core, 100.0 + T.rejoin_timeout - 0.01)
    assert core.role is Role.JOINING
    _tick(core, 100.0 + T.rejoin_timeout)
    assert core.role is not Role.JOINING  # bounded: alone after rejoin_timeout
    while not core.is_manager:
        _tick(core, core.next_deadline())
    assert core.is_manager


def test_once_every_recorded_member_is_heard_it_elects_at_once() -> None:
    core, _ = _core({"b": "b:7400", "d": "d:7400"})
    core.handle(_welcome("b"), 100.1)
    _tick(core, 100.0 + T.join_timeout)
    assert core.role is Role.JOINING  # d not heard yet
    # d is up: a JOIN from it (it restarts too) is enough.
    core.handle(Received(Join(Peer("d", "d:7400", "d-2", 0), 0, ())), 101.0)
    assert core.next_deadline() <= 101.0
    _tick(core, 101.0)
    assert core.role is Role.CANDIDATE  # an election among the nodes that are up


def test_a_manager_that_welcomes_it_ends_the_wait_at_once() -> None:
    core, _ = _core({"b": "b:7400", "d": "d:7400"})
    b = Peer("b", "b:7400", "b-2", 0)
    core.handle(Received(Welcome(b, 3, Claim(3, 0, "b", "b:7400"),
                                 (MemberInfo("b", "b:7400", "b-2", 0, True),), 1)), 100.05)
    assert core.role is Role.FOLLOWER and core.manager == "b"


def test_a_waiting_node_stays_out_of_elections() -> None:
    core, _ = _core({"b": "b:7400", "d": "d:7400"})
    z = Peer("z", "z:7400", "z-1", 0)
    out = core.handle(Received(Election(z, 0, "")), 100.6)
    assert core.role is Role.JOINING
    assert [type(e.msg) for e in out if isinstance(e, Send)] == [Join]  # no OK: stays out


def test_rejoin_timeout_zero_turns_the_wait_off() -> None:
    core, _ = _core({"b": "b:7400"}, timings=Timings(rejoin_timeout=0))
    _tick(core, 100.0 + T.join_timeout)
    assert core.role is not Role.JOINING


def test_recorded_members_without_seeds_still_wait() -> None:
    core, out = _core({"b": "b:7400"}, seeds=())
    assert core.role is Role.JOINING and _joins(out) == ["b:7400"]


def test_the_rejoin_timeout_may_be_given_with_the_members() -> None:
    core = NodeCore(Peer("a", "a:7400", "a-1", 0), now=0.0, rng=random.Random(1),
                    seeds=("b:7400",))
    core.rejoin({"b": "b:7400"}, timeout=2.0)
    core.handle(Start(), 0.0)
    _tick(core, 1.9)
    assert core.role is Role.JOINING
    _tick(core, 2.0)
    assert core.role is not Role.JOINING


@pytest.mark.parametrize("value", [-1, -0.5, True, "5"])
def test_a_bad_rejoin_timing_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="rejoin_timeout"):
        Timings(rejoin_timeout=value)  # type: ignore[arg-type]


def test_the_data_directory_records_the_other_live_members(tmp_path: Path) -> None:
    s = Store(tmp_path / "d", "a@h")
    assert s.open() is None and s.recorded == {}
    s.members = lambda: {"b@h": "h:7401", "c@h": "h:7402"}
    s.mark()
    s.write({"tasks": {}}, 0.0)
    s.close()
    doc = json.loads((tmp_path / "d" / "tasks.json").read_text())
    assert doc["members"] == {"b@h": "h:7401", "c@h": "h:7402"}
    again = Store(tmp_path / "d", "a@h")
    assert again.open() == {"tasks": {}}
    assert again.recorded == {"b@h": "h:7401", "c@h": "h:7402"}
    again.close()


def test_a_file_of_an_older_build_records_no_members(tmp_path: Path) -> None:
    s = Store(tmp_path / "d", "a@h")
    s.open()
    s.mark()
    s.write({"tasks": {}}, 0.0)  # no members provider: nothing recorded
    s.close()
    doc = json.loads((tmp_path / "d" / "tasks.json").read_text())
    assert "members" not in doc
    doc["members"] = {"a@h": "h:1", "b@h": 5, "c@h": "h:3"}  # ourselves and junk are skipped
    (tmp_path / "d" / "tasks.json").write_text(json.dumps(doc))
    again = Store(tmp_path / "d", "a@h")
    again.open()
    assert again.recorded == {"c@h": "h:3"}
    again.close()


def test_rejoin_timeout_from_toml_flag_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "a@127.0.0.1"\nrejoin_timeout = 8000\n')
    assert load_config(str(path), {}).rejoin_timeout == 8000
    args = build_parser().parse_args(["--config", str(path), "--rejoin-timeout", "0"])
    assert config_from_args(args).rejoin_timeout == 0  # the flag wins; 0 turns it off
    assert load_config(None, {"name": "a@127.0.0.1"}).rejoin_timeout == REJOIN_TIMEOUT_MS == 5000
    assert clerk.Node(name="a@10.0.0.5", rejoin_timeout=100).config.rejoin_timeout == 100
    assert clerk.node_spec(name="a@10.0.0.5", rejoin_timeout=0).args[0].rejoin_timeout == 0


@pytest.mark.parametrize("value", ['"5"', "-1", "3600001", "true", "2.5"])
def test_a_bad_rejoin_timeout_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\nname = "a@127.0.0.1"\nrejoin_timeout = {value}\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path), {})
    assert err.value.key == "rejoin_timeout" and str(path) in str(err.value)
    assert "0 to 3600000" in str(err.value)


def test_a_manager_from_its_own_disk_waits_once_for_the_members_offers() -> None:
    """``Scheduler.from_disk`` (clerk._adopt): a manager whose table is only its data
    directory's states dispatches nothing before the live members' OFFERs (a member may hold
    a newer copy), for at most OFFER_WAIT_MS after its activation; without it, at once."""
    from clerk._schedule import OFFER_WAIT_MS, Scheduler
    from tests.unit.test_lineage import NODES, K, due, manager, run, tdef

    src = manager(1, "x")
    for slot in range(K + 1, K + 4):
        run(src, slot)
    old = src.table()  # counter 3: the restarted manager's own disk
    for slot in range(K + 4, K + 6):
        run(src, slot)
    new = src.table()  # counter 5: a member's disk

    def restarted(from_disk: bool) -> Scheduler:
        s = Scheduler([tdef()], random.Random(2), await_offers=True)
        s.load(old)
        s.from_disk = from_disk
        s.activate(due(K + 10) + 0.1, graceful=False, claim=(2, "a"))
        return s

    s = restarted(True)
    skipped = s.records["t"].counts["skipped"]
    ds, _ = s.tick(due(K + 11), NODES)
    assert ds == [] and s.records["t"].counts["skipped"] == skipped + 1  # b, c may hold newer
    s.merge(new, source="b")
    s.offer_from("b")
    s.offer_from("c")
    ds, _ = s.tick(due(K + 12), NODES)
    assert len(ds) == 1 and ds[0].state == 5  # from the best copy among them
    # Members that never offer hold it back at most OFFER_WAIT_MS after the activation.
    s = restarted(True)
    assert s.tick(due(K + 11), NODES)[0] == []
    late = due(K + 10) + 0.1 + OFFER_WAIT_MS / 1000
    ds, _ = s.tick(max(due(K + 12), late), NODES)
    assert len(ds) == 1 and ds[0].state == 3
    # Without it (a failover: a replicated table), at once.
    s = restarted(False)
    ds, _ = s.tick(due(K + 11), NODES)
    assert len(ds) == 1 and ds[0].state == 3


def test_a_change_of_the_member_list_alone_reaches_the_data_directory(tmp_path: Path) -> None:
    """A member joins while no row of the table changes (a task of a long interval, or the
    kill -9 before the next result): the list must still be written, or a restart from that
    directory waits for fewer members than it had (the flaky ``recorded 2 other member(s)``
    of tests/integration/test_state_durable.py). The follower's path of ``persist``."""
    from types import SimpleNamespace

    from clerk._replica import Replica, ReplicaLog
    from clerk._replication import Replication

    store = Store(tmp_path / "d", "a@h")
    store.open()
    live = {"b@h": "h:7401"}
    store.members = lambda: dict(live)
    replica = Replica()
    source = ReplicaLog("M")
    source.put_table({"tasks": {"x": 1}})
    delta = source.delta(-1)
    assert delta is not None and replica.apply(delta)
    members = SimpleNamespace(list_epoch=1)
    core = SimpleNamespace(table_log=ReplicaLog("own"), replica=replica, members=members,
                           is_manager=False)
    runner = SimpleNamespace(store=store, agent=SimpleNamespace(core=core), _persisted=None,
                             _disk_rows=None, _replicate_dirty=False, _replicate_after=0.0,
                             scheduler=SimpleNamespace(active=False))
    now = 100.0
    Replication.persist(runner, now)  # type: ignore[arg-type]
    store.flush()
    assert store.writes == 1
    live["c@h"] = "h:7402"  # c joins: the list's epoch moves, the table stays as it was
    members.list_epoch = 2
    for step in range(1, 4):
        Replication.persist(runner, now + step)  # type: ignore[arg-type]
    store.flush()
    assert store.writes == 2, "the list change alone is one write"
    store._plain = True  # as a kill -9 leaves it: no final snapshot
    store.close()
    again = Store(tmp_path / "d", "a@h")
    assert again.open() == {"tasks": {"x": 1}}
    assert again.recorded == {"b@h": "h:7401", "c@h": "h:7402"}
    again.close()
