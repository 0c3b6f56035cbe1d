"""The manager's answers to the operator commands it applied, by request: a client that sent a
command again because the answer was late gets the first answer, and the command is not
applied twice (the rule is in :mod:`clerk._ops`, "A repeated request gets the first answer")."""

from __future__ import annotations

from collections import OrderedDict

from clerk._messages import Control, ControlReply

__all__ = ["ANSWER_MEMORY_S", "MAX_ANSWERS", "Answered"]

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
