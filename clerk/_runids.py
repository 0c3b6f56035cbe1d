"""Run ids: the claim that dispatched a run and the state it started from, in its id.

A manager names each run ``<scheduler prefix>-<seq>/<term>/<manager>~<version>.<crc>``
(:meth:`clerk._running.Running._dispatch`): a new manager that gets the RESULT of a run its
table never showed reads from the id which claim sent it (:func:`dispatching_claim`) and
whether it continues the row (:func:`base_tag`): see :mod:`clerk._unseen`. Pure functions.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from clerk._record import TaskRecord

__all__ = ["base_tag", "dispatching_claim"]

#: ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` without an encoder per call.
_LINEAGE_DUMP = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


#: Lineage checksums by :func:`_lineage_key` (a manager meets a few lineages per task: its
#: own branch, the ones it took over); emptied when it grows past ``_CRCS_KEEP``.
_CRCS: dict[tuple[Any, ...], str] = {}
_CRCS_KEEP = 4096


def _lineage_key(origin: Any, branch: Any) -> tuple[Any, ...] | None:
    """A key that names the JSON of ``[origin, branch]`` exactly, for the shape every manager
    writes (an origin dict and a branch list of ints and strings); None for any other
    (not cached: 1, 1.0 and True are equal keys but different JSON)."""
    if type(origin) is not dict or type(branch) is not list:
        return None
    for v in origin.values():
        if type(v) is not int and type(v) is not str:
            return None
    for v in branch:
        if type(v) is not int and type(v) is not str:
            return None
    return (*origin.items(), None, *branch)


def base_tag(rec: TaskRecord) -> str:
    """The state a run of ``rec`` starts from, as the end of its run id: ``~<version>.<crc>``
    (the checksum of the lineage's origin and last branch: within one branch the version
    names exactly one state), ``~init`` when there is no state yet. Made at every dispatch
    and checked at every result: the checksum is looked up by the lineage (~5 us to encode
    and sum on a loaded machine, ~1 to look up)."""
    if not rec.has_state:
        return "~init"
    branch = rec.history[-1] if rec.history else None
    key = _lineage_key(rec.origin, branch)
    crc = _CRCS.get(key) if key is not None else None
    if crc is None:
        lineage = _LINEAGE_DUMP([rec.origin, branch])
        crc = f"{zlib.crc32(lineage.encode()):08x}"
        if key is not None:
            if len(_CRCS) >= _CRCS_KEEP:
                _CRCS.clear()
            _CRCS[key] = crc
    return f"~{rec.version}.{crc}"


#: A run id: ``<scheduler prefix>-<seq>/<term>/<manager>`` and the ``base_tag``: the claim
#: that dispatched the run is in it, for a new manager that gets the run's RESULT without
#: having seen the run (:meth:`clerk._unseen.UnseenRuns._unseen_run`). Node names hold
#: neither "/" nor "~".
_RUN_CLAIM = re.compile(r"^[^/~]*/(\d{1,18})/([^/~]+)~")


def dispatching_claim(run_id: str) -> tuple[int, str] | None:
    """The claim (term, manager) a run id names, or None (an id from an older build)."""
    m = _RUN_CLAIM.match(run_id)
    return None if m is None else (int(m.group(1)), m.group(2))
