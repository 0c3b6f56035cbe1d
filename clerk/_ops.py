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
* **Every table-changing command respects the stall fence** (:mod:`clerk._fence`): a
  manager whose claim is unconfirmed after a stall answers ``pause``, ``resume`` and
  ``trigger`` as "no manager yet" (the client tries again, through the others too), and
  applies none of them. It may have been replaced during the stall, and its client may have
  given up on it and had the command applied by the manager elected meanwhile. A trigger
  applied here too was a second run of one command (the flake of
  ``test_trigger_never_overlaps_a_run_in_flight``: three starts for two runs); a pause or
  resume applied here went into a table nobody follows any more: lost when this node steps
  down, or contradicting the new manager's, and answered ``ok`` all the same. A repeat of a
  command applied before the stall still gets its first answer (that answer was true).
* **A repeated request gets the first answer** (:mod:`clerk._answered`). A client sends a
  command again when no answer came within its per-attempt wait (2 s,
  :func:`clerk._client.request_control`), to the next address, and from there to the manager
  again: on a loaded machine the first attempt may well have been applied, its answer late.
  A trigger applied twice started a second run once the first had ended (the operator asked
  for one); a pause sent twice moved ``paused_at``. Every attempt of one request carries the
  client's one-off incarnation, so the manager keeps its answer to each applied
  ``pause``/``resume``/``trigger`` by (incarnation, operation, task) for
  ``ANSWER_MEMORY_S`` (at most ``MAX_ANSWERS``) and gives a repeat that same answer without
  applying it again. The memory is the manager's own: a repeat that reaches a new manager
  after a failover is applied there (a trigger is then refused while the run it started is
  in flight, as any other).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from clerk._control import OPS
from clerk._messages import Control, ControlReply

if TYPE_CHECKING:
    from clerk._runner import TaskRunner

__all__ = ["handle_control"]

log = logging.getLogger("clerk.tasks")

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
    if not core.dispatch_ok:
        # This manager's loop stalled past the manager timeout and no member has confirmed
        # its claim since (clerk._fence): it may have been replaced meanwhile, and it changes
        # nothing in its table until it knows. A trigger the stall held back (an attempt whose
        # client gave up and asked the new manager) started a second run beside the new
        # manager's, on this node itself when it chose itself (a local run has no fence); a
        # pause or resume went into a table that a new manager's contradicts.
        return reply(False, "no manager yet (this manager's loop stalled: its claim is "
                     "unconfirmed until a member answers): try again")
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
