"""Membership and election on real node processes: agreement, crash and pause of the manager,
restarts, duplicate names, dead seeds. Each test runs its own LocalCluster on loopback."""

from __future__ import annotations

import time

import pytest

from clerk.testing import LocalCluster, free_ports, wait_until
from tests.integration.cluster_helpers import (
    adopted_at,
    brief,
    failover,
    present,
    run_node,
    wait_agreed,
    wait_converged,
)

#: kill -9 of the manager -> every live node agrees on a new one within this (issue 4).
KILL_FAILOVER_S = 1.0


def members_of(view: dict) -> dict[str, dict]:
    return {m["name"]: m for m in view["members"]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [1, 3, 5])
def test_nodes_agree_on_one_manager(n: int) -> None:
    with LocalCluster(n) as cluster:
        manager = cluster.wait_for_manager(timeout=20)
        views = {n: present(v) for n, v in cluster.views().items()}
        assert {v["manager"] for v in views.values()} == {manager}
        assert len({v["term"] for v in views.values()}) == 1
        assert [v["role"] for v in views.values()].count("manager") == 1
        assert views[manager]["role"] == "manager"
        # Every node knows every member, alive, at its address.
        wait_until(lambda: all(
            {m["name"]: (m["address"], m["alive"]) for m in v["members"]}
            == {x: (cluster.address(x), True) for x in cluster.names}
            for v in cluster.views().values() if v), timeout=10,
            message=lambda: f"member lists differ: {cluster.views()}")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_kill_9_of_the_manager_gives_a_new_manager_agreed_by_all_within_1s() -> None:
    """Three crashes in a row, each time with the old manager restarted in between; the
    bound is checked on every one (see cluster_helpers.failover for how it is measured)."""
    with LocalCluster(3) as cluster:
        cluster.wait_for_manager(timeout=20)
        results = []
        for _ in range(3):
            fo = failover(cluster, cluster.kill)
            results.append(fo)
            assert fo.new != fo.old
            # The crashed node is not counted alive by the new manager: marked dead at once,
            # or absent when the new manager's list came from a view that had already
            # dropped that incarnation (seen once in a few runs after back-to-back kills).
            old_row = members_of(cluster.status(fo.new)).get(fo.old)
            assert old_row is None or old_row["alive"] is False, old_row
            cluster.start(fo.old)
            # The next kill comes as soon as the restarted node follows the manager, while
            # its join may still be settling (messages queued for its address in flight):
            # the harsh case (notes/core-bugs.md #8 made it a 0.8 s failover).
            def not_older(v: tuple[str, int], t: int = fo.term) -> bool:
                return v[1] >= t

            wait_agreed(cluster, cluster.names, timeout=15, check=not_older)
        worst = max(results, key=lambda f: f.agreed_within)
        assert worst.agreed_within < KILL_FAILOVER_S, (
            f"failover took {worst.agreed_within:.3f}s (one poll round took up to "
            f"{worst.slowest_round * 1000:.0f} ms): {results}")


@pytest.mark.timeout(60)
def test_paused_manager_is_replaced_and_steps_down_when_resumed() -> None:
    with LocalCluster(3) as cluster:
        # The whole cluster formed first (under load a node's start takes seconds: a pause
        # while one is still joining is another test, and the start is not what is timed).
        wait_converged(cluster, timeout=20)
        fo = failover(cluster, cluster.pause, timeout=10)
        assert fo.new != fo.old and fo.term > fo.old_term
        # Silence, not a closed connection, reveals a pause: manager_timeout (0.7 s) + election.
        assert fo.agreed_within < 3.0, fo
        still = present(wait_until(lambda: cluster.views([fo.new])[fo.new], timeout=10))
        assert members_of(still)[fo.old]["alive"] is False
        cluster.resume(fo.old)
        # The old manager hears a higher claim at its first heartbeat and follows it.
        view = wait_agreed(cluster, cluster.names, timeout=10)
        assert view == (fo.new, fo.term), brief(cluster, cluster.names)
        old_view = cluster.status(fo.old)
        assert old_view["role"] == "follower"
        assert old_view["highest_term"] == fo.term
        assert adopted_at(cluster, fo.old, fo.new, fo.term) is not None
        # And it is a live member again in everyone's eyes.
        wait_until(lambda: all(members_of(v)[fo.old]["alive"]
                               for v in cluster.views().values() if v), timeout=10)


@pytest.mark.timeout(60)
def test_killed_node_restarted_rejoins_with_a_new_incarnation() -> None:
    with LocalCluster(3) as cluster:
        manager = cluster.wait_for_manager(timeout=20)
        follower = next(n for n in cluster.names if n != manager)
        before = members_of(cluster.status(manager))[follower]["incarnation"]
        cluster.kill(follower)
        wait_until(lambda: not members_of(cluster.status(manager))[follower]["alive"],
                   timeout=5, message="the killed follower is still marked alive")
        cluster.start(follower)
        view = wait_agreed(cluster, cluster.names, timeout=15)
        assert view[0] == manager, "a rejoining node does not depose a healthy manager"
        after = cluster.status(follower)["incarnation"]
        assert after != before

        def replaced() -> bool:
            return all(len([m for m in v["members"] if m["name"] == follower]) == 1
                       and members_of(v)[follower]["incarnation"] == after
                       and members_of(v)[follower]["alive"]
                       for v in cluster.views().values() if v)

        wait_until(replaced, timeout=10,
                   message=lambda: f"old incarnation still listed: {cluster.views()}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("whose", ["follower", "manager"])
def test_a_duplicate_name_is_refused_and_the_cluster_is_unaffected(whose: str) -> None:
    with LocalCluster(3) as cluster:
        manager = cluster.wait_for_manager(timeout=20)
        # Formed: a node that has just followed the manager (on a relayed claim) may not list
        # every member yet, and the rows compared below would be missing from ``before``.
        wait_converged(cluster, timeout=20)
        before = {n: present(v) for n, v in cluster.views().items()}
        name = manager if whose == "manager" else next(n for n in cluster.names
                                                        if n != manager)
        # Same name, same seeds, same cookie, another port.
        (port,) = free_ports(1)
        text = cluster.config_path(name).read_text()
        dup = cluster.dir / "dup.toml"
        text = text.replace(f"port = {cluster.ports[name]}", f"port = {port}")
        # Its own data directory, as on another host (one directory shared by two nodes is
        # refused before the node even starts: test_state_durable).
        data = cluster.data_path(name)
        text = text.replace(f'data_dir = "{data}"', f'data_dir = "{cluster.dir / "dup-data"}"')
        dup.write_text(text)
        t0 = time.monotonic()
        proc = run_node(["--config", str(dup)], timeout=30)
        assert proc.returncode == 1, proc.stderr
        assert time.monotonic() - t0 < 15
        assert f"the name '{name}' is already used by " in proc.stderr, proc.stderr
        assert "refused" in proc.stderr
        # Nothing changed for the cluster: same manager and term, the original entry kept.
        after = {n: present(v) for n, v in cluster.views().items()}
        for n, v in after.items():
            assert (v["manager"], v["term"]) == (manager, before[n]["term"]), brief(cluster, [n])
            row = members_of(v)[name]
            assert row["address"] == cluster.address(name)
            assert row["incarnation"] == members_of(before[n])[name]["incarnation"]


@pytest.mark.timeout(60)
def test_a_node_with_only_a_dead_seed_keeps_retrying_and_joins_when_it_comes_up() -> None:
    with LocalCluster(2, start=False) as cluster:
        lonely, seed = cluster.names
        cluster.start(lonely)  # its only seed is ``seed``, which is not running
        # Alone, it makes a lone claim, at term 0 (clerk._claims).
        assert wait_agreed(cluster, [lonely], timeout=15) == (lonely, 0)
        assert cluster.running(lonely)
        # The seed comes up on its own (it does not know ``lonely``): two managers, until
        # ``lonely``'s periodic seed probe finds it and they merge.
        cluster.start(seed, seeds=[])
        view = wait_agreed(cluster, [lonely, seed], timeout=20)
        assert view[0] in (lonely, seed)
        wait_until(lambda: all(v is not None and {m["name"] for m in v["members"]
                                                  if m["alive"]} == {lonely, seed}
                               for v in cluster.views().values()), timeout=5,
                   message=lambda: f"member lists: {cluster.views()}")
        assert "no seed answered" in cluster.log(lonely)
