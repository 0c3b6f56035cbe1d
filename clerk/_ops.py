"""A node's side of the operator commands: CONTROL in, CONTROL_REPLY out (rules in
:mod:`clerk._control`).

* ``pause``, ``resume`` and ``trigger`` change the task table, so only the manager applies
  them; it replicates the table at once and answers only then (the answer means "it is in the
  replicated table"). A follower does not forward: it answers ``ok=False`` with the manager's
  address, and the client retries there with ``via`` set to the follower's name, so the status
  still shows the node the command came through. During an election there is no address and
  the client retries until its timeout.
* ``show`` (one task's detail and history) is answered by any node from its replica.
* An unknown task name or operation is an error listing the known ones; a trigger refused
  because a run is in flight says so.
* **A repeated request gets the first answer** (:class:`Answered`). A client sends a command
  again when no answer came within its per-attempt wait (2 s, :func:`clerk._client.
  request_control`), to the next address, and from there to the manager again: on a loaded
  machine the first attempt may well have been applied, its answer late. A trigger applied
  twice started a second run once the first had ended (the operator asked for one; the
  client's attempt that timed out had started the run); a pause sent twice moved
  ``paused_at``. Every attempt of one request carries the client's one-off incarnation, so
  the manager keeps its answer to each applied ``pause``/``resume``/``trigger`` by
  (incarnation, operation, task) for ``ANSWER_MEMORY_S`` (at most ``MAX_ANSWERS``) and gives
  a repeat that same answer without applying it again. The memory is the manager's own: a
  repeat that reaches a new manager after a failover is applied there (the trigger is then
  refused while the run it started is in flight, as any other).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from clerk._control import OPS
from clerk._messages import Control, ControlReply

if TYPE_CHECKING:
    from clerk._runner import TaskRunner

__all__ = ["ANSWER_MEMORY_S", "MAX_ANSWERS", "Answered", "handle_control"]

log = logging.getLogger("clerk.tasks")

#: How long the manager answers a repeated request with its first answer (s): well past any
#: client's wait (the CLI's default timeout is 5 s).
ANSWER_MEMORY_S = 120.0
#: At most this many answers are kept (the oldest go first).
MAX_ANSWERS = 1024


class Answered:
    """The manager's answers to applied commands, by request (see the module docstring)."""

    def __init__(self) -> None:
        self._answers: OrderedDict[tuple[str, str, str], tuple[float, ControlReply]] = (
            OrderedDict())

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, msg: Control, now: float) -> ControlReply | None:
        """The answer given to this request before, if it was applied within the memory."""
        self._expire(now)
        got = self._answers.get(_request(msg))
        return None if got is None else got[1]

    def put(self, msg: Control, answer: ControlReply, now: float) -> None:
        self._answers[_request(msg)] = (now, answer)
        self._answers.move_to_end(_request(msg))
        while len(self._answers) > MAX_ANSWERS:
            self._answers.popitem(last=False)

    def _expire(self, now: float) -> None:
        answers = self._answers
        while answers:
            key, (when, _) = next(iter(answers.items()))
            if when > now - ANSWER_MEMORY_S:
                break
            del answers[key]


def _request(msg: Control) -> tuple[str, str, str]:
    return (msg.sender.incarnation, msg.op, msg.task)


def handle_control(runner: TaskRunner, msg: Control, now: float, wall: float) -> ControlReply:
    agent = runner.agent
    core = agent.core
    sched = runner.scheduler

    def reply(ok: bool, error: str = "", manager: str = "",
              result: object = None) -> ControlReply:
        return ControlReply(agent.me, core.term, ok, error, manager, result)

    if msg.op not in OPS:
        return reply(False, f"unknown operation {msg.op!r} (known: {', '.join(OPS)})")
    if msg.op == "show":
        runner._follow_replica()  # a follower: its replica's rows changed since last time
        unknown = sched.unknown(msg.task)
        if unknown:
            return reply(False, unknown)
        return reply(True, result=sched.detail(msg.task, wall))
    if not core.is_manager or not sched.active:
        claim = core.manager_claim
        address = "" if claim is None or claim.name == agent.me.name else claim.address
        return reply(False, "not the manager" if address else "no manager yet (election or "
                     "take-over in progress): try again", address)
    unknown = sched.unknown(msg.task)
    if unknown:
        return reply(False, unknown)
    before = runner.answered.get(msg, now)
    if before is not None:
        # A repeat of a request applied already (its answer was late): not applied again.
        log.info("task=%s %s repeated by the same client: answered as before", msg.task,
                 msg.op)
        return before
    via = msg.via or agent.me.name
    if msg.op in ("pause", "resume"):
        register = sched.set_paused(msg.task, msg.op == "pause", via, wall)
        runner.replicate_now(now)
        log.info("task=%s %sd by an operator through %s", msg.task, msg.op, via)
        answer = reply(True, result={"task": msg.task, **register})
        runner.answered.put(msg, answer, now)
        return answer
    dispatch, error = sched.trigger(msg.task, wall, runner.loaded(wall))
    if dispatch is None:
        return reply(False, error)
    runner.send_dispatch(dispatch, now)
    runner.replicate_now(now)
    log.info("task=%s triggered by an operator through %s: run %s slot %d on %s", msg.task,
             via, dispatch.run_id, dispatch.slot, dispatch.node)
    answer = reply(True, result={"task": msg.task, "run": dispatch.run_id,
                                 "slot": dispatch.slot, "node": dispatch.node, "via": via})
    runner.answered.put(msg, answer, now)
    return answer
