"""A simulated node and the layer above its core (:mod:`clerk._simnet`'s ``SimNode`` and
``SimLayer``, re-exported there).

Split out of :mod:`clerk._simnet` to keep it under ~600 lines when the layer got
``exits_at`` (a node that left waits for its results' acknowledgements before its process
exits: :mod:`clerk._routing`); no behaviour change.
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
