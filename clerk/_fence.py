"""The stall fence: a manager that was frozen dispatches nothing until its claim is confirmed.

Rules (issue 9, item 6: a resumed manager ran a slot its successor had already run):

* **Detect.** The core notes the monotonic time of every event it handles. A manager's loop
  handles one at least every heartbeat interval, so a gap longer than ``manager_timeout`` means
  the process did not run (SIGSTOP, a frozen VM, a huge stall) for longer than its followers
  wait before electing a successor: it may have been replaced.
* **Fence.** It then sends a heartbeat round at once, with the member list (which members
  acknowledge at once, however rarely they acknowledge an idle heartbeat: clerk._heartbeats),
  and is *unconfirmed*: it dispatches nothing. Its members get a full member timeout to
  answer (their silence was ours).
* **Confirm.** An ACK at its term of a heartbeat sequence number from that round or later means
  a member still follows it: confirmed. An older ACK (queued in ZeroMQ during the freeze) proves
  nothing. If it was replaced, members answer its heartbeats with the newer claim instead and it
  steps down, never having dispatched.
* **Cut off.** If nobody answers for ``member_timeout``, it is alone on its side of a partition
  and goes on as that side's manager (partitions run both sides). Members marked dead meanwhile
  do not count as an answer: peers close a frozen node's connections (ZeroMQ heartbeats), which
  reads as "peer down" the moment it resumes.
* A manager with no live member when it resumes has nobody to ask and is not fenced; becoming
  manager or following another one clears the fence.

Pure: time comes in as arguments.
"""

from __future__ import annotations

__all__ = ["StallFence"]

INF = float("inf")


class StallFence:
    """Stall detection and the confirmation state of one node's claim."""

    def __init__(self, now: float) -> None:
        self.last_event = now
        self.stalls = 0
        self._seq = 0  # confirmed by an ACK of this heartbeat sequence or later (0: confirmed)
        self._until = INF  # ... or by nobody answering until then

    @property
    def confirmed(self) -> bool:
        return self._seq == 0

    def gap(self, now: float) -> float:
        """Time since the previous event; records ``now`` as the latest."""
        gap, self.last_event = now - self.last_event, now
        return gap

    def engage(self, next_seq: int, now: float, member_timeout: float) -> None:
        """A stall was seen and there are members to ask: fence until confirmed."""
        self.stalls += 1
        self._seq = next_seq
        self._until = now + member_timeout

    def count(self) -> None:
        """A stall with nobody to ask (not fenced), counted all the same."""
        self.stalls += 1

    def ack(self, acked_term: int, my_term: int, seq: int) -> None:
        if self._seq and acked_term == my_term and seq >= self._seq:
            self._seq = 0

    def expire(self, now: float) -> None:
        """Nobody answered for a member timeout: cut off, the manager of our own side."""
        if self._seq and now >= self._until:
            self._seq = 0

    def clear(self) -> None:
        self._seq = 0
