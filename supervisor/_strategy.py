"""Restart strategy: what to do when a child exits, as a pure function (no I/O, no clock).

:func:`on_child_exit` gets the children in start order (with whether each still runs),
the id of the child that exited and its exit kind, and returns a :class:`Decision`: the
ordered stop/remove/start actions, whether they are a restart (which the caller must first
count against the restart intensity), and whether ``auto_shutdown`` says to stop.

This follows OTP's ``supervisor:restart_child/3`` and ``restart/3``:

* ``permanent`` children are always restarted; ``transient`` ones only after an
  ``abnormal`` exit; ``temporary`` ones never, and their spec is removed.
* A child that is not restarted stays as a terminated spec (transient) or is removed
  (temporary); if it is ``significant``, ``auto_shutdown`` may then stop the supervisor:
  ``any_significant`` at once, ``all_significant`` once no significant child runs.
* ``one_for_one`` restarts the exited child only.
* ``one_for_all`` stops every other running child in *reverse* start order, removes the
  temporary ones among them, then starts every remaining child (including ones that were
  not running, as OTP's ``start_children`` does) in start order.
* ``rest_for_one`` does the same for the children started after the exited one: stops
  them in reverse order, then starts the exited child and them in start order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from supervisor._types import AutoShutdown, ExitKind, Restart, Strategy

__all__ = ["Action", "ChildView", "Decision", "on_child_exit", "should_restart"]


@dataclass(frozen=True)
class ChildView:
    """What the strategy needs to know about one child."""

    id: str
    restart: Restart = "permanent"
    running: bool = True
    significant: bool = False


@dataclass(frozen=True)
class Action:
    """One step for the process layer: ``stop`` (terminate honouring its shutdown),
    ``remove`` (forget its spec) or ``start`` (start its process again)."""

    op: Literal["stop", "remove", "start"]
    child_id: str


@dataclass(frozen=True)
class Decision:
    """Outcome of a child exit.

    ``restart`` is True when ``actions`` restart children: the caller first records a
    restart in the intensity history and, if that is exceeded, gives up instead.
    ``auto_shutdown`` is True when the supervisor must stop (``actions`` are then the
    bookkeeping to do first).
    """

    actions: tuple[Action, ...]
    restart: bool = False
    auto_shutdown: bool = False


def should_restart(restart: Restart, kind: ExitKind) -> bool:
    """OTP's rule: permanent always; transient unless normal/shutdown; temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return kind == "abnormal"
    return False


def _stop_right_to_left(others: Sequence[ChildView]) -> list[Action]:
    """Stop the running ones among ``others`` in reverse start order; forget temporary ones
    (OTP's ``terminate_children``: they are not restarted)."""
    actions: list[Action] = []
    for child in reversed(others):
        if child.running:
            actions.append(Action("stop", child.id))
        if child.restart == "temporary":
            actions.append(Action("remove", child.id))
    return actions


def on_child_exit(
    strategy: Strategy,
    auto_shutdown: AutoShutdown,
    children: Sequence[ChildView],
    exited_id: str,
    kind: ExitKind,
) -> Decision:
    """Decide what follows the exit of ``exited_id`` (whose ``running`` is ignored).

    Raises:
        KeyError: ``exited_id`` is not among ``children``.
    """
    index = next((i for i, c in enumerate(children) if c.id == exited_id), None)
    if index is None:
        raise KeyError(exited_id)
    exited = children[index]

    if not should_restart(exited.restart, kind):
        removed = (Action("remove", exited.id),) if exited.restart == "temporary" else ()
        stop = False
        if exited.significant and auto_shutdown == "any_significant":
            stop = True
        elif exited.significant and auto_shutdown == "all_significant":
            stop = not any(c.significant and c.running for c in children if c.id != exited.id)
        return Decision(removed, restart=False, auto_shutdown=stop)

    if strategy == "one_for_one":
        return Decision((Action("start", exited.id),), restart=True)

    if strategy == "one_for_all":
        affected = list(children)
    else:  # rest_for_one
        affected = list(children[index:])
    others = [c for c in affected if c.id != exited.id]
    actions = _stop_right_to_left(others)
    actions += [
        Action("start", c.id) for c in affected if c.id == exited.id or c.restart != "temporary"
    ]
    return Decision(tuple(actions), restart=True)
