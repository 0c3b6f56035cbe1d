"""A member whose link to a new manager is down when it starts following it sends its OFFER again
once the link is up (clerk._core, "OFFERs again"): real nodes in network namespaces, real
ZeroMQ. Skipped without root / ``ip netns`` / ``ss``.

In the lowest member's namespace a policy rule (``ip rule ... dport 7400 blackhole``: no ``tc``
action or packet filter needed) drops what it sends to the successor's mailbox (its DEALER's and
REQ's connections, which reconnect and fail; the successor's own connection to the member, and
the member's answers on it, still work), and its open connections there are cut (``ss -K``). The
manager is killed (the member paused meanwhile): the successor takes over from its replica
(``Scheduler.stale``: it holds every dispatch until each live member's OFFER is in, up to
``OFFER_WAIT_SURE_MS``, 10 s), the member follows it (its COORDINATOR comes over the successor's
connection) and sends its OFFER, which waits for the connection and is dropped after
``clerk._transport.PENDING_TTL`` (1 s). ``BLOCK_S`` after the kill the rule goes: ZeroMQ
connects (its back-off is 200 ms at most), the socket monitor reports the link up (``PeerUp``),
and the member sends its OFFER again: the task runs within ``AGAIN_WITHIN`` of that. Without it
(main) nothing sent the OFFER again: no run for seconds (the 10 s bound)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import clerk
from clerk.testing import wait_until
from tests.integration.cluster_tasks import QuickCounter
from tests.integration.netns import PORT, Lab, NetnsCluster, available

WHY = available() or ("" if shutil.which("ss") else "no ss")
pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(bool(WHY), reason=f"needs network namespaces: {WHY}")]

#: The member is paused this long (s) across the manager's death (see the test).
PAUSE_S = 0.2
#: ... and its links to the successor stay blocked this long after (s): past PENDING_TTL
#: (1 s); with the pause below ``member_timeout`` (2 s: the member's ACKs are lost too).
BLOCK_S = 1.3
#: The task runs again within this long of the block's end (s): a reconnect (ZeroMQ's back-off,
#: 200 ms), the OFFER, the next slot (0.2 s) and a loaded machine's slack.
AGAIN_WITHIN = 2.0


def _starts(log: str) -> list[float]:
    try:
        with open(log) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    return [float(p[5]) for p in (line.split() for line in lines) if len(p) == 6]


def _in(ns: str, *argv: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"


def test_a_member_whose_offer_was_lost_offers_again_once_its_link_is_up(tmp_path) -> None:
    log = str(tmp_path / "runs.log")
    task = clerk.task(QuickCounter, name="again.counter", interval=200, args={"log": log})
    with Lab(3) as lab, NetnsCluster(lab, [task]) as cluster:
        manager = cluster.wait_for_manager(timeout=30)
        wait_until(lambda: len(_starts(log)) >= 5, timeout=20, interval=0.05)
        others = [n for n in cluster.names if n != manager]
        # (equal priorities: the highest name takes over)
        member, successor = min(others), max(others)
        ns, to = lab.ns(cluster.index(member)), lab.ip(cluster.index(successor))
        rule = ("to", f"{to}/32", "ipproto", "tcp", "dport", str(PORT), "blackhole")
        _in(ns, "ip", "rule", "add", *rule)
        _in(ns, "ss", "-K", "-tn", "dst", to, "dport", "=", f":{PORT}")
        # Paused while the successor takes over: it learns of it and of the death together,
        # and follows it (blocked, its own ELECTION finds no answer: it would claim, and its
        # merge HANDOVER, which counts as its OFFER, would end the wait by another path).
        cluster.pause(member)
        killed = time.time()
        cluster.kill(manager)
        wait_until(lambda: time.time() >= killed + PAUSE_S, timeout=PAUSE_S + 5)
        cluster.resume(member)
        resumed = time.time()
        wait_until(lambda: time.time() >= resumed + BLOCK_S, timeout=BLOCK_S + 5)
        ran_blocked = [at for at in _starts(log) if at > killed]
        _in(ns, "ip", "rule", "del", *rule)
        released = time.time()
        wait_until(lambda: time.time() >= released + 4.0, timeout=10)
        after = sorted(at for at in _starts(log) if at > released)
        agreed = cluster.agreed()
        again = {n: cluster.log(n).count("sending it our OFFER again") for n in others}
        report = (f"agreed {agreed}; runs while blocked {len(ran_blocked)}; first run "
                  f"{after[0] - released if after else None} s after the block ended; "
                  f"OFFERs again {again}")
        print(report)
        assert agreed is not None and agreed[0] == successor, report
        assert after and after[0] - released <= AGAIN_WITHIN, report
        assert "sending it our OFFER again" in cluster.log(member), report
