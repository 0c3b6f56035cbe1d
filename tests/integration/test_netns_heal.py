"""After a real partition heals (network namespaces, links set down), every node agrees on one
manager within a second, and nobody keeps electing. Skipped without root / ``ip netns``."""

from __future__ import annotations

import os

import pytest

from tests.integration.heal_helpers import KINDS, heal_trial
from tests.integration.netns import Lab, NetnsCluster, available, names, run_prefix

WHY = available()
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(bool(WHY), reason=f"needs network namespaces: {WHY}")]


def test_every_node_agrees_within_a_second_after_a_heal() -> None:
    with Lab(5) as lab, NetnsCluster(lab) as cluster:
        cluster.wait_for_manager(timeout=30)
        heals = [heal_trial(cluster, lab, kind) for kind in KINDS]
        report = "\n".join(str(h) for h in heals)
        assert all(h.seconds < 1.0 for h in heals), report
        # At most one election per node that was cut off (it finds the cluster again once).
        assert all(h.elections <= 2 for h in heals), report


def test_a_lab_beside_another_live_suites_lab_shares_no_name_or_subnet() -> None:
    """Parallel suites share the root namespace: a lab's start must neither reuse nor delete
    another's links (every lab was ``clk-rt`` in 10.202.0.0/24, and one suite's start once
    deleted a running suite's bridge: its next ``ip addr add`` failed, rc 255)."""
    theirs_prefix = run_prefix(os.getppid())  # named as a live process's lab is
    with Lab(2, prefix=theirs_prefix) as theirs, Lab(2) as mine:
        assert mine.prefix != theirs.prefix and mine.subnet != theirs.subnet
        namespaces, links = names()
        assert {theirs.bridge, theirs.spare, theirs.veth(1), theirs.veth(2)} <= set(links)
        assert {theirs.ns(1), theirs.ns(2)} <= set(namespaces)
    namespaces, links = names()
    assert not [n for n in [*namespaces, *links] if n.startswith((mine.prefix + "-",
                                                                   theirs.prefix + "-"))]
