"""After a real partition heals (network namespaces, links set down), every node agrees on one
manager within a second, and nobody keeps electing. Skipped without root / ``ip netns``."""

from __future__ import annotations

import pytest

from tests.integration.heal_helpers import KINDS, heal_trial
from tests.integration.netns import Lab, NetnsCluster, available

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
