"""A stranger's forged RESULT must not make a manager trust the stranger's address.

The manager answers a RESULT it refuses from a non-member with its claim (a node that left
may be sending its results to a claim of ours it knew: clerk._leftoffers). It also noted the
address as one "we sent our claim to" (``core.tell``), and that list is what lets a REFUSE
stop a manager that nobody follows (clerk._dupname.refuse_accepted) and a HANDOVER from a
non-member be merged (clerk._handover.accept_merge). So a forged RESULT, then a forged
REFUSE from the same address, stopped a lone ``--insecure`` node (tools/fuzz.py's garbage,
sent ten times in order by test_security_hostile, does exactly that: it hung there)."""

from __future__ import annotations

import pytest
import zmq

import clerk
from clerk._codec import encode
from clerk._messages import Handover, MemberInfo, Peer, Refuse, Result
from clerk.testing import LocalCluster, wait_until
from tests.integration.test_security_hostile import fuzz

pytestmark = pytest.mark.timeout(90)


def test_a_forged_result_does_not_open_the_door_to_a_forged_refuse_or_handover() -> None:
    task = clerk.task(fuzz.COUNTER, name="counter", interval=200, args={"log": "/dev/null"})
    with LocalCluster(1, tasks=[task], insecure=True) as cluster:
        name = cluster.wait_for_manager(timeout=15)
        st0 = cluster.status(name)
        s = Peer("s1@fuzz", "127.77.0.9:20009", "abcdef012345", -1)
        ctx = zmq.Context()
        try:
            sock = fuzz.flood_socket(ctx, cluster.address(name))
            sock.send_multipart(encode(Result(s, st0["term"], "counter", "r", 1, "ok", {})))
            wait_until(lambda: cluster.status(name)["bad_frames"].get(
                "result_not_member", 0) >= 1, timeout=10)
            ghost = MemberInfo("ghost@fuzz", "127.77.0.10:20010", "g", 0, True, ())
            sock.send_multipart(encode(Handover(s, 0, (ghost,), {"tasks": {"counter": {}}})))
            sock.send_multipart(encode(Refuse(s, st0["term"], "go away")))
            sock.close(linger=0)
        finally:
            ctx.term()

        def judged() -> bool:
            try:
                seen = cluster.status(name)["bad_frames"]
            except Exception:  # (stopped: its status no longer answers)
                return not cluster.running(name)
            return {"handover_stranger", "refuse_stranger"} <= set(seen)

        wait_until(judged, timeout=10)
        assert cluster.running(name), "the node stopped: a forged REFUSE was accepted"
        st = cluster.status(name)
        assert (st["manager"], st["incarnation"], st["term"]) == (name, st0["incarnation"],
                                                                  st0["term"])
        assert "ghost@fuzz" not in str(st.get("members")), st.get("members")
