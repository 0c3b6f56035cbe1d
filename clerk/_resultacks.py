"""A manager's RESULT_ACKs, held until the row the result changed is on every live member.

Rules (default mode; quorum mode acknowledges on its own commit, :mod:`clerk._runquorum`):

* A RESULT from another node is applied at once (the next slot sees its state), but its
  RESULT_ACK waits (:meth:`PendingAcks.hold`). The node keeps the result until it is
  acknowledged and sends it again to every new manager it follows (:mod:`clerk._outbox`). So a
  manager that dies after applying a result and before its row reached the members loses
  nothing: the successor adopted the run in flight from its replica, and the result comes to it
  again. Acknowledging at once (as before) made that window a lost update.
* **Stamped**: once every change the scheduler made so far is in the table log (the encoder
  caught up and the log is complete), each held ACK gets the log's id and sequence
  (:meth:`stamp`): the row is in the log at or below that sequence.
* **Released**: when every live member acknowledged that sequence of that log
  (:meth:`release`): each holds the row, so any of them can take over with it. A member
  acknowledges table changes within a heartbeat interval (:mod:`clerk._heartbeats`), and the
  node releases ACKs with its next heartbeat round (they share its batch), so the ACK
  leaves within ~100-200 ms of the result.
* **Bounded**: a held ACK is released after ``ACK_WAIT`` seconds whatever the members hold (a
  joiner still loading a big table in chunks, a member about to be dropped as silent): the
  node's outbox meanwhile resends it once a second (the manager answers nothing to a result it
  holds an ACK for).
* A stamp of another log (the manager claimed again: a new log) no longer says anything: such
  ACKs are stamped again. A node that stops managing drops every held ACK: their nodes send
  the results to the next manager. But a manager that leaves (it drains) acknowledges a
  node that left (no longer a live member) at once, and sends such ACKs it holds when it
  stops managing and when it exits (:meth:`take_all`): its table, with those rows, is handed
  over and written last, and that node waits for its results' ACKs to exit, while the next
  manager may not list it (it would wait out its bound, then warn of an update that was
  not lost). A live member's ACKs are dropped as before: it resends to the next manager.

Pure bookkeeping: no I/O, time injected (monotonic seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ACK_WAIT", "HeldAck", "PendingAcks"]

#: At most this long (s) a RESULT_ACK waits for the members: the member timeout (2 s), after
#: which a member that acknowledged nothing is dropped anyway. Normal waits are one heartbeat
#: interval (a member's table ACK, paced at most one per interval).
ACK_WAIT = 2.0


@dataclass(slots=True)
class HeldAck:
    """The RESULT_ACK owed to the node at ``to`` for run ``run_id`` of ``task``. Not frozen
    (one is made per result another node reports: a frozen one sets each field through
    ``object.__setattr__``, ~2x the time); nothing changes one once made."""

    to: str
    task: str
    run_id: str
    since: float


class PendingAcks:
    """Held RESULT_ACKs: unstamped (rows not in the log yet), then stamped in log order."""

    def __init__(self) -> None:
        self._unstamped: list[HeldAck] = []
        self._stamped: deque[tuple[str, int, HeldAck]] = deque()  # (log, seq, ack), seq order
        self._runs: set[str] = set()
        self.expired = 0  # ACKs released by ACK_WAIT, not by the members (status)

    def __len__(self) -> int:
        return len(self._runs)

    def holds(self, run_id: str) -> bool:
        """An ACK for this run is held: its node's resend needs no answer now."""
        return run_id in self._runs

    def hold(self, to: str, task: str, run_id: str, now: float) -> bool:
        """Hold the ACK of a result just applied (or of no use); False if already held."""
        if run_id in self._runs:
            return False
        self._runs.add(run_id)
        self._unstamped.append(HeldAck(to, task, run_id, now))
        return True

    def stamp(self, log: str, seq: int) -> None:
        """Every change made so far is in table log ``log`` at or below ``seq``."""
        if self._stamped and self._stamped[-1][0] != log:
            # A new log: the old stamps mean nothing there; oldest first, as they came.
            self._unstamped[:0] = [ack for _, _, ack in self._stamped]
            self._stamped.clear()
        for ack in self._unstamped:
            self._stamped.append((log, seq, ack))
        self._unstamped.clear()

    def release(self, log: str, upto: int, now: float) -> list[HeldAck]:
        """The ACKs every member now holds the rows of (``upto`` of ``log``, the lowest
        sequence the live members acknowledged), and those held past ``ACK_WAIT``."""
        out: list[HeldAck] = []
        stamped = self._stamped
        while stamped and stamped[0][0] == log and stamped[0][1] <= upto:
            out.append(stamped.popleft()[2])
        # Held in arrival order (stamped ones first: stamp() keeps the order), so the
        # expired ones are at the front.
        expired = now - ACK_WAIT
        released = len(out)
        while stamped and stamped[0][2].since <= expired:
            out.append(stamped.popleft()[2])
        if not stamped and self._unstamped and self._unstamped[0].since <= expired:
            n = next((i for i, a in enumerate(self._unstamped) if a.since > expired),
                     len(self._unstamped))
            out.extend(self._unstamped[:n])
            del self._unstamped[:n]
        self.expired += len(out) - released
        for ack in out:
            self._runs.discard(ack.run_id)
        return out

    def waiting_stamp(self) -> bool:
        """Some ACK waits for its row to be in the log."""
        return bool(self._unstamped)

    def next_deadline(self) -> float:
        """When the oldest held ACK is released whatever the members hold."""
        if self._stamped:
            return self._stamped[0][2].since + ACK_WAIT
        if self._unstamped:
            return self._unstamped[0].since + ACK_WAIT
        return float("inf")

    def take_all(self) -> list[HeldAck]:
        """Every ACK held, released now (a leaving manager: its table, with their rows, is
        handed over and written last), in the order held."""
        out = [a for _, _, a in self._stamped] + self._unstamped
        self._unstamped = []
        self._stamped.clear()
        self._runs.clear()
        return out

    def clear(self) -> None:
        """This node no longer manages: the nodes resend their results to the next one."""
        self._unstamped.clear()
        self._stamped.clear()
        self._runs.clear()
