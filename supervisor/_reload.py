"""Reload as OTP's release upgrade of a supervisor's child specs, as a pure function.

:func:`plan_reload` compares the running specs with the ones just read, by child id:

* an id only in the new file is *started* (left to right, in the new order);
* an id only in the running tree is *stopped* (right to left, with its ``shutdown``);
* an id in both with an equal spec is *unchanged*: its process is not touched;
* an id in both whose spec differs is *restarted*: stopped, then started with the new
  spec (if it was running; a terminated child just keeps the new spec);
* a nested supervisor whose own fields are equal but whose tree (flags or children)
  differs is *recursed into*: the same comparison is applied inside it, so changing one
  grandchild restarts that grandchild only, not the nested supervisor.

Specs are compared by value (:func:`spec_key`); a nested supervisor by its configuration,
not its identity. The new children list takes the new file's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from supervisor._spec import ChildSpec, NestedSupervisor

__all__ = ["ReloadPlan", "plan_reload", "spec_key"]


def spec_key(spec: ChildSpec, *, without_start: bool = False) -> tuple[object, ...]:
    """The spec's fields as a comparable tuple (a nested supervisor by its configuration)."""
    values: list[object] = []
    for f in fields(spec):
        value = getattr(spec, f.name)
        if f.name == "start":
            if without_start:
                continue
            if isinstance(value, NestedSupervisor):
                value = ("supervisor", value._tree_key())
        values.append(value)
    return tuple(values)


@dataclass(frozen=True)
class ReloadPlan:
    """What to do, as child ids (see the module docstring)."""

    stop: tuple[str, ...]  # right to left in the old order
    restart: tuple[str, ...]  # in the new order
    nested: tuple[str, ...]  # nested supervisors to reload in place
    start: tuple[str, ...]  # in the new order
    unchanged: tuple[str, ...]


def plan_reload(old: Sequence[ChildSpec], new: Sequence[ChildSpec]) -> ReloadPlan:
    """Compare ``old`` (running) and ``new`` (just read) child specs by id."""
    old_by_id = {s.id: s for s in old}
    new_ids = {s.id for s in new}
    restart: list[str] = []
    nested: list[str] = []
    unchanged: list[str] = []
    for spec in new:
        before = old_by_id.get(spec.id)
        if before is None:
            continue
        if spec_key(before) == spec_key(spec):
            unchanged.append(spec.id)
        elif (
            before.is_supervisor
            and spec.is_supervisor
            and spec_key(before, without_start=True) == spec_key(spec, without_start=True)
        ):
            nested.append(spec.id)
        else:
            restart.append(spec.id)
    return ReloadPlan(
        stop=tuple(s.id for s in reversed(old) if s.id not in new_ids),
        restart=tuple(restart),
        nested=tuple(nested),
        start=tuple(s.id for s in new if s.id not in old_by_id),
        unchanged=tuple(unchanged),
    )
