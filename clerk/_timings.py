"""Protocol timings, with the reasoning behind each default.

Targets (from the design): a crashed manager is replaced well under 1 s, a silent (paused) one
within about 1 s, and a busy 2-core machine must not cause false suspicions.

* A crash is caught by the fast path, not by these timeouts: the TCP connection to a killed
  process closes at once and the ZeroMQ socket monitor turns that into a ``PeerDown`` event,
  so the election starts within milliseconds. The highest surviving node still probes the
  suspect (a flapping connection must not depose a live manager) but waits only
  ``election_timeout / 6`` (25 ms) for its OK, since a live process answers in about a
  millisecond on a LAN; then it takes over. A crash costs ~30 ms plus message latency.
* A *pause* (SIGSTOP, a stalled VM) keeps the connection open, so only silence reveals it:
  ``manager_timeout`` is 7 heartbeat intervals (700 ms). A Python loop on a loaded 2-core machine
  can stall for 100-300 ms (a GC pass, a burst of process spawns in the test suite) and that
  costs 1-3 heartbeats, far from 7. Detection plus an election of a few ms lands at ~0.8 s.
* ``election_timeout`` (150 ms) is how long a candidate waits for OK from higher nodes; a live
  node answers in about a millisecond, so 150 ms leaves room for a stall. If it still expires
  the worst case is two managers of the same term, which claim ordering resolves at once.
* ``member_timeout`` (2 s) drops a silent member. Dropping is not urgent (a crashed member is
  already marked dead by the fast path, and dispatch avoids dead members), and a longer timeout
  avoids member churn under load.
* ``vouch_window`` (250 ms, 2.5 heartbeats): a follower that heard its manager this recently
  vouches for it when a lower node calls an election, instead of deposing a healthy manager.
* ``join_timeout`` (500 ms): a starting node that found no manager through its seeds by then
  calls an election (a fresh cluster's nodes find each other within milliseconds). A joiner
  that follows a manager on a seed's word (a relayed WELCOME) gives that manager
  ``manager_timeout + join_timeout`` for its first own word, not ``manager_timeout``
  (``CoreState.manager_due``): it answers the JOIN a round trip and a turn of its loop later.
* ``rejoin_timeout`` (5 s, the TOML key ``rejoin_timeout`` in ms): a node restarted from a data
  directory that recorded other members waits this long for them (not only ``join_timeout``)
  before it calls an election without them (:mod:`clerk._joining`, "Restarts"). A full-cluster
  restart whose nodes come up within it continues from the best copy among them; a node whose
  members are gone for good runs alone after it. 0 turns the wait off.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Timings"]

#: Timings where 0 means "off" rather than an error.
ZERO_OFF = frozenset({"rejoin_timeout"})


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Protocol timings in seconds. See the module docstring for why the defaults are what
    they are."""

    heartbeat_interval: float = 0.1
    manager_timeout: float = 0.7
    member_timeout: float = 2.0
    election_timeout: float = 0.15
    coordinator_timeout: float = 0.5
    vouch_window: float = 0.25
    join_timeout: float = 0.5
    join_retry: float = 1.0
    probe_interval: float = 1.0
    handover_timeout: float = 1.0
    rejoin_timeout: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not (
                    value > 0 or (value == 0 and f.name in ZERO_OFF)):
                what = "a positive number (or 0: off)" if f.name in ZERO_OFF else \
                    "a positive number"
                raise ValueError(f"timing {f.name} must be {what}, got {value!r}")
        if self.manager_timeout <= 2 * self.heartbeat_interval:
            raise ValueError(
                "timing manager_timeout must be more than 2 heartbeat intervals "
                f"({self.manager_timeout} <= 2 * {self.heartbeat_interval})"
            )
        if self.member_timeout <= 2 * self.heartbeat_interval:
            raise ValueError(
                "timing member_timeout must be more than 2 heartbeat intervals "
                f"({self.member_timeout} <= 2 * {self.heartbeat_interval})"
            )
