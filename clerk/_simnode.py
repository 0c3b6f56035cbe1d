"""A simulated node and the layer above its core: the data both parts of the simulator share.

:class:`SimNode` is one node of :class:`clerk._simnet.SimNetwork`: its real
:class:`~clerk._core.NodeCore`, whether it is up, paused or stopped, its timer, what arrived
while it was paused, and (quorum mode) its voter file, which survives a crash. A
:class:`SimLayer` runs above a node's core, as the real node's task layer does
(:mod:`clerk._simtasks`). Kept apart from the network so that its parts
(:mod:`clerk._simlinks`) need not import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from clerk._core import Effect, Event, NodeCore

__all__ = ["SimLayer", "SimNode"]


class SimLayer(Protocol):
    """What runs above a simulated node's core (see the module docstring)."""

    def after(self, event: Event, effects: list[Effect]) -> None: ...

    def next_deadline(self) -> float: ...

    def leave_at(self, now: float) -> float | None:
        """When to look again at a stop request made ``now`` (None: act on it now)."""
        ...

    def on_leave(self) -> None:
        """The node acts on a stop request now (called just before its core is told, as the
        real agent calls its task runner's ``on_leave``)."""
        ...

    def exits_at(self, now: float) -> float | None:
        """A node that left: until when its process is still up (it waits for something, as
        the real agent's ``ready_to_leave``); None: it has exited. A restart waits for it."""
        ...


@dataclass
class SimNode:
    """One simulated node: its core, and whether it is up and running."""

    name: str
    address: str
    priority: int
    seeds: tuple[str, ...]
    core: NodeCore
    up: bool = True
    paused: bool = False
    timer_at: float = float("inf")
    backlog: list[Event] = field(default_factory=list)
    layer: SimLayer | None = None
    disk: dict[str, Any] | None = None  # quorum mode: the voter file (survives crashes)
    as_name: str = ""  # the name its core goes by, if not ``name`` (a duplicate name)
