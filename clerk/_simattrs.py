"""What every mixin of the simulated task layer (:class:`clerk._simtasks.LedgerLayer`) reads
of it: declared once here, as :mod:`clerk._agentattrs` does for the real agent's mixins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerk._schedule import Scheduler

if TYPE_CHECKING:
    from clerk._simnet import SimNetwork, SimNode

__all__ = ["LedgerAttrs"]


class LedgerAttrs:
    """The layer's own attributes, set by ``LedgerLayer.__init__``."""

    world: Any  # clerk._simtasks.SimLedger (which imports the mixins)
    net: SimNetwork
    node: SimNode
    scheduler: Scheduler
