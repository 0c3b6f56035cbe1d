"""The agent's side of quorum mode: the voter file, the quorum's log lines and gauges.

Rules (the protocol itself is the pure core's, see clerk._quorum):

* **Only with voters.** Without ``voters`` in the config nothing here runs and the core gets
  no quorum arguments (the default mode is untouched).
* **The voter file is read before the core exists** (``<data_dir>/voter.json``, see
  clerk._voterstore) and handed to it as ``voter_record``; an unusable file stops the node
  with an error naming it. Nodes that are not voters read and write nothing.
* **VoterWrite**: the record is written (coalesced, fsynced) off the loop, and its ``then``
  effects are carried out on the loop once it is durable, in order. Consecutive VoterWrites
  of one batch become one write of the last record whose callback carries out every ``then``
  in order (each record is the voter's whole register).
* **QuorumChanged** is logged, one line per change: ``quorum ok (3 of 3 voters reachable)``
  or ``quorum lost: 2 of 3 voters unreachable (a@h, b@h)``, and kept for the Prometheus
  gauges (``clerk_quorum_ok``, ``clerk_quorum_voters_reachable``, ``clerk_quorum_voters``),
  which the metrics thread reads without touching the core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from clerk._config import NodeConfig
from clerk._coretypes import Effect, QuorumChanged, VoterWrite
from clerk._voterstore import VoterStore

__all__ = ["QuorumShell", "default_quorum_status", "describe"]

log = logging.getLogger("clerk.node")


def default_quorum_status(voters: Sequence[str] = ()) -> dict[str, Any]:
    """What ``status()["quorum"]`` holds when the core reports none: the default mode (no
    voters) or, before the core's first report, a quorum not (yet) reached."""
    if not voters:
        return {"mode": "available", "voters": [], "reachable": [], "quorum": None,
                "detail": "", "promised": None}
    return {"mode": "quorum", "voters": list(voters), "reachable": [], "quorum": "lost",
            "detail": f"{len(voters)} of {len(voters)} voters unreachable", "promised": None}


def _majority(n: int) -> int:
    return n // 2 + 1


def describe(ok: bool, reachable: Sequence[str], voters: Sequence[str]) -> str:
    """The log line (and status text) for a view of the quorum."""
    missing = [v for v in voters if v not in reachable]
    if ok:
        return f"quorum ok ({len(voters) - len(missing)} of {len(voters)} voters reachable)"
    if len(voters) - len(missing) >= _majority(len(voters)):
        # A majority answers heartbeats, but this manager's writes were not accepted by one
        # (a higher ballot was promised, or the acceptances are late): it stops dispatching.
        return (f"quorum lost: no majority of the {len(voters)} voters accepted this node's "
                f"ballot in time ({len(missing)} unreachable"
                + (f": {', '.join(missing)})" if missing else ")"))
    return (f"quorum lost: {len(missing)} of {len(voters)} voters unreachable "
            f"({', '.join(missing)})")


class QuorumShell:
    """Quorum mode in the agent: owns the voter store (if this node is a voter)."""

    def __init__(self, config: NodeConfig, wake: Callable[[], None]) -> None:
        self.voters: tuple[str, ...] = tuple(config.voters)
        self.store: VoterStore | None = None
        self.record: dict[str, Any] | None = None
        path = config.data_path
        if config.is_voter and path is not None:
            self.store = VoterStore(path, config.name, wake=wake, source=config.source)
            self.record = self.store.load()  # ConfigError if unusable: the node stops
        #: The last view reported by the core (read by the metrics thread).
        self.view: tuple[bool, tuple[str, ...]] = (False, ())
        self.changes = 0

    @property
    def enabled(self) -> bool:
        return bool(self.voters)

    def core_kwargs(self) -> dict[str, Any]:
        """NodeCore's quorum arguments; none in the default mode, whose core is unchanged."""
        if not self.voters:
            return {}
        return {"voters": self.voters, "voter_record": self.record}

    def started(self) -> None:
        if not self.voters:
            return
        what = (f"a voter (voter file {self.store.file}, "
                f"{'new' if self.record is None else 'read'})"
                if self.store is not None else "not a voter")
        log.info("quorum mode: voters %s; this node is %s", ", ".join(self.voters), what)

    # --- effects ----------------------------------------------------------------------------

    def voter_writes(self, writes: Sequence[VoterWrite],
                     apply: Callable[[list[Effect]], None]) -> None:
        """Make the last record of ``writes`` durable, then ``apply`` every ``then`` in order
        (on the loop, from :meth:`deliver`)."""
        thens = [e for w in writes for e in w.then]
        if self.store is None:
            # The core asks only voters to write; a non-voter holds no promise to keep.
            log.error("VoterWrite on a node that is not a voter with a data directory: its "
                      "answer is not sent")
            return
        self.store.write(writes[-1].record, lambda: apply(thens))

    def quorum_changed(self, effect: QuorumChanged) -> None:
        self.view = (effect.ok, tuple(effect.reachable))
        self.changes += 1
        line = describe(effect.ok, effect.reachable, effect.voters or self.voters)
        if effect.ok:
            log.info("%s", line)
        else:
            log.warning("%s; no task runs are started until a majority is back", line)

    def deliver(self) -> None:
        """On the loop: carry out the ``then`` of every record now on disk."""
        if self.store is not None:
            self.store.deliver()

    # --- observing --------------------------------------------------------------------------

    def status(self, core_status: dict[str, Any]) -> dict[str, Any]:
        """``status()["quorum"]``: the core's view, plus this voter's file."""
        quorum = core_status.get("quorum")
        q = dict(quorum) if isinstance(quorum, dict) else default_quorum_status(self.voters)
        if self.store is not None:
            lat = sorted(self.store.latencies)
            q["voter_file"] = {
                "path": str(self.store.file), "writes": self.store.writes,
                "failures": self.store.failures,
                "write_ms_median": round(lat[len(lat) // 2] * 1000, 3) if lat else None}
        return q

    def gauges(self) -> dict[str, float] | None:
        """For the metrics thread: None in the default mode."""
        if not self.voters:
            return None
        ok, reachable = self.view
        return {"ok": 1.0 if ok else 0.0, "reachable": float(len(reachable)),
                "voters": float(len(self.voters))}

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
