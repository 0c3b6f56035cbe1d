"""The simulated data directory of a ledger node (:mod:`clerk._simtasks`): the table the node
holds, written after every event that changed it (no coalescing: the disk is as fresh as it
can be, which is what "acknowledged" means there), with its live members; a restarted node
starts from it.

Split out of :mod:`clerk._simtasks` to keep it under ~600 lines. :class:`LedgerDisk` is a
mixin of :class:`clerk._simtasks.LedgerLayer`: the attributes it declares are the layer's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from clerk._simattrs import LedgerAttrs

if TYPE_CHECKING:
    pass

__all__ = ["LedgerDisk"]


class LedgerDisk(LedgerAttrs):
    """Writes a node's table and members to its simulated disk (``SimLedger.disks``)."""

    _seen_replicated: object  # the replica's position last written (a follower's)

    def _persist(self, changed: bool) -> None:
        core = self.node.core
        written = self.node.name in self.world.disks
        if written:
            # A change of the member list alone is written too, as the node's does
            # (clerk._replication, ``persist``): a restart waits for the members it had.
            self._persist_members()
        if self.scheduler.active:
            if not changed and written:
                return
            table = self.scheduler.table()
        else:
            seen = (core.replica.version, core.table_log.log, core.table_log.seq)
            if seen == self._seen_replicated:
                return
            self._seen_replicated = seen
            self.scheduler.load(core.replicated)
            table = self.scheduler.table()
        for row in table["tasks"].values():
            row["running"] = None
        self.world.disks[self.node.name] = json.loads(json.dumps(table))
        if not written:
            self._persist_members()

    def _persist_members(self) -> None:
        # The live members but this node, by name, as ``member_list()`` orders them, from
        # the rows themselves: this runs after every event of every node (a MemberInfo per
        # row each time was ~12 % of the simulations' time).
        me = self.node.name
        rows = sorted((r for r in self.node.core.members.others() if r.alive),
                      key=lambda r: r.name)
        self.world.disk_members[me] = {r.name: r.peer.address for r in rows if r.name != me}
