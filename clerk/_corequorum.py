"""Quorum mode's calls on a node's core, and where its outcomes lead.

:class:`CoreQuorum` is a base of :class:`clerk._core.NodeCore`: what the task layer asks of
quorum mode (a write to the voters, the proposer, the rows phase 1 learned, its status), the
quorum messages' entry (PREPARE, PROMISE, ACCEPT, ACCEPTED, REJECT), and what an outcome of
:mod:`clerk._quorumcore` does to the core (follow a claim, claim, elect). The rules of quorum
mode itself (voters, PREPARE/ACCEPT, check-quorum) live in :mod:`clerk._quorumcore`; it runs
only with ``voters``.

* **A node in the default mode** drops a quorum message (``not_quorum``, counted in status).
* **Status and deadline** add quorum mode's view (``quorum``) and its timers to the state's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clerk import _election, _quorumcore
from clerk._corestate import CoreState
from clerk._coretypes import Effect, Role
from clerk._messages import Claim, Message

__all__ = ["CoreQuorum"]


class CoreQuorum(CoreState):
    """Quorum mode's calls and outcomes (see the module docstring)."""

    def quorum_write(self, rows: Mapping[str, Any], now: float) -> tuple[list[int],
                                                                        list[Effect]]:
        """Manager in quorum mode: write ``rows`` (task -> ``{"reserved": slot or None[,
        "record": ...]}``) to the voters. Returns the write seqs (each is reported by a
        :class:`WriteCommitted` once a majority holds it; empty: not a manager with a
        ballot) and the effects to carry out."""
        if self.quorum is None:
            return [], []
        self._out = []
        seqs = _quorumcore.write(self, rows, now)
        self._quorum_outcome(self.quorum.deferred, now)
        self.quorum.deferred = None
        _quorumcore.observe(self, now)
        out, self._out = self._out, []
        return seqs, out

    def quorum_status(self) -> dict[str, Any]:
        """Quorum mode's view: mode, voters, reachable, ``"ok"``/``"lost"``, detail, the
        promised ballot (:mod:`clerk._quorumcore`)."""
        return _quorumcore.status(self)

    @property
    def quorum_table(self) -> dict[str, Any]:
        """Manager in quorum mode: the rows its phase 1 learned (task -> ``Row``), for the
        scheduler to continue from."""
        p = self.quorum.proposer if self.quorum is not None else None
        return dict(p.table) if p is not None and p.ready else {}

    @property
    def proposer(self) -> _quorumcore.Proposer | None:
        """Manager in quorum mode: the ballot's proposer (commits, reservations)."""
        q = self.quorum
        if q is None or self.role is not Role.MANAGER or q.proposer is None:
            return None
        return q.proposer if q.proposer.ballot == self.my_claim().key else None

    def status(self) -> dict[str, Any]:
        st = super().status()
        st["quorum"] = self.quorum_status()
        return st

    def next_deadline(self) -> float:
        deadline = super().next_deadline()
        if self.quorum is not None:
            deadline = min(deadline, _quorumcore.next_deadline(self))
        return deadline

    def _quorum_outcome(self, outcome: _quorumcore.Outcome, now: float) -> None:
        if isinstance(outcome, Claim):
            _election.on_claim(self, outcome, now)
        elif isinstance(outcome, int):
            _election.take_claim(self, now, term=outcome)
        elif outcome == "elect":
            _election.start_election(self, now, suspect="")
        elif outcome == "claim":
            _quorumcore.claim(self, now)

    def _m_quorum(self, msg: Message, now: float) -> None:
        if self.quorum is None:
            self.drop("not_quorum", f"{type(msg).__name__} from {msg.sender.name!r}: this "
                                    "node runs in the default mode")
            return
        self._quorum_outcome(_quorumcore.on_message(self, msg, now), now)
