"""Tasks of tests/integration/test_reclaim.py (importable by the worker processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq

from clerk._codec import encode
from clerk._messages import Election, Peer
from tests.integration.cluster_tasks import SuddenlyLongOnN1


class ReclaimsLongOnN1(SuddenlyLongOnN1):
    """A counter that only node ``n1`` may run, in a millisecond, until the file
    ``args['long']`` exists: the first run that finds it removes it, sends the manager an
    ELECTION above its term (``args['elect']`` holds ``address term``: the manager claims
    again, a millisecond or two after this run's dispatch) and runs ``args['sleep']`` s.
    Appends ``slot term node count started ended`` per run to ``args['log']``."""

    def strike(self, state: Any) -> None:
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


class ReclaimsLongOnN2(ReclaimsLongOnN1):
    ONLY = "n2"


class ReclaimsLongOnN3(ReclaimsLongOnN1):
    ONLY = "n3"
