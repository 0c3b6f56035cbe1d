"""Tasks of tests/integration/test_reclaim.py (importable by the worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import zmq

import clerk
from clerk._codec import encode
from clerk._messages import Election, Peer
from tests.integration.cluster_tasks import OnlyOn, _append


class ReclaimsLongOnN1(OnlyOn, clerk.Task):
    """A counter that only node ``n1`` may run, in a millisecond, until the file
    ``args['long']`` exists: the first run that finds it removes it, sends the manager an
    ELECTION above its term (``args['elect']`` holds ``address term``: the manager claims
    again, a millisecond or two after this run's dispatch) and runs ``args['sleep']`` s.
    Appends ``slot term node count started ended`` per run to ``args['log']``."""

    def init(self, args: Any) -> Any:
        return {**args, "count": 0}

    def execute(self, state: Any) -> Any:
        started = time.time()
        run = clerk.current_run()
        try:
            os.unlink(state["long"])
        except FileNotFoundError:
            pass
        else:
            address, term = Path(state["elect"]).read_text().split()
            ctx = zmq.Context()
            try:
                sock = ctx.socket(zmq.DEALER)
                sock.linger = 1000
                sock.connect(f"tcp://{address}")
                peer = Peer("elector@127.0.0.1", "127.0.0.1:9", "e1", -1)
                sock.send_multipart(encode(Election(peer, int(term) + 5, "")))
                sock.close()
            finally:
                ctx.term()
            time.sleep(state["sleep"])
        count = state["count"] + 1
        _append(state["log"], f"{run.slot} {run.term} {run.node} {count} {started:.6f} "
                              f"{time.time():.6f}")
        return {**state, "count": count}


class ReclaimsLongOnN2(ReclaimsLongOnN1):
    ONLY = "n2"


class ReclaimsLongOnN3(ReclaimsLongOnN1):
    ONLY = "n3"
