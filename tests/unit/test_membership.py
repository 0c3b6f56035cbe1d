"""The member table: admission rules, epochs, and the follower/candidate operations."""

import pytest

from clerk._membership import Admission, MemberTable
from clerk._messages import MemberInfo, Peer

TIMEOUT = 2.0
ME = Peer("me@h0", "h0:7400", "inc-me", 1)
A = Peer("a@h1", "h1:7400", "inc-a1", 0)


def table(now=0.0, tasks=("t",)):
    return MemberTable(ME, tasks, now)


def info(peer, alive=True, tasks=()):
    return MemberInfo(peer.name, peer.address, peer.incarnation, peer.priority, alive, tasks)


def test_new_table_holds_only_me():
    t = table()
    assert len(t) == 1 and ME.name in t and t.epoch == 0
    assert t.others() == []
    assert t.infos() == (MemberInfo(ME.name, ME.address, ME.incarnation, 1, True, ("t",)),)
    assert t.get(ME.name).alive and t.by_address(ME.address).peer == ME
    assert t.get("nobody") is None and t.by_address("nowhere:1") is None


def test_admit_new_name_is_added_and_bumps_epoch():
    t = table()
    assert t.admit(A, ("x",), 1.0, TIMEOUT) == Admission("added")
    assert t.epoch == 1 and len(t) == 2
    row = t.get(A.name)
    assert row.peer == A and row.tasks == ("x",) and row.alive and row.last_seen == 1.0
    assert row.acked_epoch == -1
    assert [r.name for r in t.others()] == [A.name]
    assert t.by_address(A.address) is row


def test_admit_same_incarnation_is_refreshed_without_epoch_bump():
    t = table()
    t.admit(A, ("x",), 1.0, TIMEOUT)
    assert t.admit(A, ("x",), 5.0, TIMEOUT) == Admission("refreshed")
    assert t.epoch == 1
    assert t.get(A.name).last_seen == 5.0


def test_refresh_with_new_tasks_or_revived_bumps_epoch():
    t = table()
    t.admit(A, ("x",), 1.0, TIMEOUT)
    assert t.admit(A, ("x", "y"), 2.0, TIMEOUT).outcome == "refreshed"
    assert t.epoch == 2 and t.get(A.name).tasks == ("x", "y")
    t.mark_dead(A.name)
    assert t.epoch == 3
    assert t.admit(A, ("x", "y"), 3.0, TIMEOUT).outcome == "refreshed"
    assert t.epoch == 4 and t.get(A.name).alive
    moved = Peer(A.name, A.address, A.incarnation, 9)  # same incarnation, new priority
    assert t.admit(moved, ("x", "y"), 4.0, TIMEOUT).outcome == "refreshed"
    assert t.epoch == 5 and t.get(A.name).peer.priority == 9


def test_restart_on_same_address_is_replaced_even_while_live():
    t = table()
    t.admit(A, ("x",), 1.0, TIMEOUT)
    restarted = Peer(A.name, A.address, "inc-a2", 0)
    assert t.admit(restarted, (), 1.1, TIMEOUT) == Admission("replaced")
    assert t.epoch == 2
    row = t.get(A.name)
    assert row.peer.incarnation == "inc-a2" and row.tasks == () and row.last_seen == 1.1
    assert len(t) == 2


def test_duplicate_name_with_live_holder_is_refused_with_a_clear_reason():
    t = table()
    t.admit(A, ("x",), 1.0, TIMEOUT)
    impostor = Peer(A.name, "h9:7400", "inc-other", 5)
    adm = t.admit(impostor, (), 1.0 + TIMEOUT - 0.01, TIMEOUT)
    assert adm.outcome == "refused"
    assert repr(A.name) in adm.reason  # names the name...
    assert A.address in adm.reason  # ...where the live holder is...
    assert "h9:7400" in adm.reason  # ...and who was refused
    assert "a live node" in adm.reason
    assert t.epoch == 1 and t.get(A.name).peer == A  # nothing changed


def test_duplicate_name_with_dead_holder_is_replaced():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    t.mark_dead(A.name)
    other = Peer(A.name, "h9:7400", "inc-other", 0)
    assert t.admit(other, (), 1.1, TIMEOUT).outcome == "replaced"
    assert t.get(A.name).peer == other and t.get(A.name).alive


def test_duplicate_name_with_silent_holder_is_replaced():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    other = Peer(A.name, "h9:7400", "inc-other", 0)
    assert t.admit(other, (), 1.0 + TIMEOUT, TIMEOUT).outcome == "replaced"
    assert t.get(A.name).peer == other


def test_own_name_is_refused_even_from_another_address():
    t = table()
    for peer in (
        Peer(ME.name, "h9:7400", "inc-x", 0),
        Peer(ME.name, ME.address, "inc-x", 0),  # even "a restart" on my own address
    ):
        adm = t.admit(peer, (), 100.0, TIMEOUT)  # long after: I am never silent to myself
        assert adm.outcome == "refused"
        assert "this node" in adm.reason and repr(ME.name) in adm.reason
        assert peer.address in adm.reason
    assert t.epoch == 0 and t.get(ME.name).peer == ME


def test_learn_records_unknown_and_dead_peers_but_never_replaces_live_or_me():
    t = table()
    t.learn([info(A, tasks=("x",))], 1.0)
    assert t.epoch == 1 and t.get(A.name).peer == A and t.get(A.name).tasks == ("x",)
    other = Peer(A.name, "h9:7400", "inc-other", 0)
    t.learn([info(other), info(Peer(ME.name, "h9:1", "inc-x", 0))], 2.0)
    assert t.get(A.name).peer == A and t.get(ME.name).peer == ME and t.epoch == 1
    t.mark_dead(A.name)
    t.learn([info(other)], 3.0)
    assert t.get(A.name).peer == other and t.get(A.name).last_seen == 3.0


def test_learn_keeps_the_alive_flag_it_was_told():
    t = table()
    t.learn([info(A, alive=False)], 1.0)
    assert not t.get(A.name).alive


def test_replace_all_adopts_the_list_keeps_me_and_bumps_epoch():
    t = table(tasks=("mine",))
    t.admit(A, (), 1.0, TIMEOUT)
    b = Peer("b@h2", "h2:7400", "inc-b", 2)
    foreign_me = MemberInfo(ME.name, "elsewhere:1", "inc-old", 0, False, ())
    epoch = t.epoch
    t.replace_all([info(b, alive=False, tasks=("q",)), foreign_me], 5.0)
    assert t.epoch == epoch + 1
    assert {r.name for r in t} == {ME.name, b.name}
    me = t.get(ME.name)
    assert me.peer == ME and me.alive and me.tasks == ("mine",)
    rb = t.get(b.name)
    assert rb.peer == b and not rb.alive and rb.tasks == ("q",) and rb.last_seen == 5.0


def test_replace_all_keeps_last_seen_of_unchanged_peers_only():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    t.replace_all([info(A)], 5.0)
    assert t.get(A.name).last_seen == 1.0
    restarted = Peer(A.name, A.address, "inc-a2", 0)
    t.replace_all([info(restarted)], 6.0)
    assert t.get(A.name).last_seen == 6.0


def test_touch_updates_revives_and_ignores_other_incarnations():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    epoch = t.epoch
    assert t.touch(A.name, A.incarnation, 2.0) is t.get(A.name)
    assert t.get(A.name).last_seen == 2.0 and t.epoch == epoch  # no change, no bump
    assert t.touch(A.name, "inc-stale", 3.0) is None
    assert t.touch("nobody", "x", 3.0) is None
    assert t.get(A.name).last_seen == 2.0
    t.mark_dead(A.name)
    epoch = t.epoch
    assert t.touch(A.name, A.incarnation, 4.0).alive
    assert t.epoch == epoch + 1


def test_mark_dead():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    epoch = t.epoch
    assert t.mark_dead(A.name) is True and not t.get(A.name).alive
    assert t.epoch == epoch + 1
    assert t.mark_dead(A.name) is False and t.epoch == epoch + 1  # already dead: no bump
    assert t.mark_dead("nobody") is False
    assert t.mark_dead(ME.name) is False and t.get(ME.name).alive


def test_remove():
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    epoch = t.epoch
    assert t.remove(A.name).peer == A and A.name not in t and t.epoch == epoch + 1
    assert t.remove(A.name) is None and t.epoch == epoch + 1
    assert t.remove(ME.name) is None and ME.name in t


def test_expire_drops_silent_members_but_never_me():
    t = table(now=0.0)
    t.admit(A, (), 1.0, TIMEOUT)
    b = Peer("b@h2", "h2:7400", "inc-b", 0)
    t.admit(b, (), 2.0, TIMEOUT)
    epoch = t.epoch
    assert t.expire(1.0 + TIMEOUT, TIMEOUT) == []  # exactly at the timeout: still in
    assert t.epoch == epoch
    gone = t.expire(1.0 + TIMEOUT + 0.01, TIMEOUT)
    assert [r.name for r in gone] == [A.name]
    assert A.name not in t and b.name in t and ME.name in t
    assert t.epoch == epoch + 1
    assert [r.name for r in t.expire(1000.0, TIMEOUT)] == [b.name]
    assert len(t) == 1 and t.epoch == epoch + 2


def test_infos_are_sorted_by_name_and_iteration_is_a_snapshot():
    t = table()
    for name in ("z@h", "b@h", "m@h"):
        t.admit(Peer(name, name + ":1", "i", 0), (), 1.0, TIMEOUT)
    assert [i.name for i in t.infos()] == sorted(["z@h", "b@h", "m@h", ME.name])
    for row in t:  # removing while iterating is safe
        t.remove(row.name)
    assert len(t) == 1


@pytest.mark.parametrize("outcome", ["added", "replaced", "refreshed"])
def test_epoch_moves_exactly_when_the_list_changes(outcome):
    t = table()
    t.admit(A, (), 1.0, TIMEOUT)
    before = t.epoch
    peer = {"added": Peer("n@h", "n:1", "i", 0),
            "replaced": Peer(A.name, A.address, "inc-new", 0),
            "refreshed": A}[outcome]
    assert t.admit(peer, (), 1.5, TIMEOUT).outcome == outcome
    assert t.epoch == before + (0 if outcome == "refreshed" else 1)
