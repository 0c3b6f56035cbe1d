"""Messages written as text in one step (split from :mod:`clerk._codec`, whose ``encode``
uses them): a RESULT and a RESULT_ACK (one each per run another node reports) and an EXECUTE
(one per dispatch), the generic path's text character for character.

How: the sender's text remembered (the same frozen ``Peer`` object is the same text), the
scalars checked inline (ASCII strings within ``MAX_STRING``, 64-bit ints, a finite float, a
bool) and quoted by the encoder's C function, the state checked and encoded alone. A writer
returns None when any field is out of that common case: the generic path (the compiled
dumper, then the encoder) then accepts the message or names the field, so what these write is
exactly what it would have written, and what they refuse gets its error
(tests/unit/test_codec_write.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from clerk._codecvalid import _INT_LIMIT, MAX_STRING, DecodeError, Validator, _v_json
from clerk._jsondump import encoder
from clerk._messages import MESSAGE_KINDS, Peer

__all__ = ["ENCODE", "Writer", "writers"]

#: One encoder for every message: ``json.dumps`` with options builds a new one per call, and
#: ``JSONEncoder.encode`` its C encoder (clerk._jsondump).
ENCODE = encoder(ensure_ascii=False, allow_nan=False)
#: A message's body as text, or None: the generic path's case.
Writer = Callable[[Any], "str | None"]

#: A str as the message encoder quotes it (``ensure_ascii=False``; for ASCII text the same as
#: with it).
_quote: Callable[[str], str] = encode_basestring
_S, _L = MAX_STRING, _INT_LIMIT


def writers(peer_dump: Validator) -> dict[type, Writer]:
    """The writers by message class; ``peer_dump``: the codec's dumper of a ``Peer`` (the
    generic path's, for the sender)."""
    last_sender: list[Any] = [object(), ""]  # the last sender written, and its JSON text

    def sender_text(peer: Any) -> str | None:
        """A sender's JSON text, as the generic path writes it (None: that path's error)."""
        if peer is last_sender[0]:
            return last_sender[1]  # type: ignore[no-any-return]
        if type(peer) is not Peer:
            return None
        try:  # (frozen, scalar fields: the same object is the same text)
            text = ENCODE(peer_dump(peer, "sender"))
        except DecodeError:
            return None
        last_sender[0], last_sender[1] = peer, text
        return text

    def state_text(state: Any, path: str) -> str | None:
        if state is None:
            return "null"
        try:
            return ENCODE(_v_json(state, path))
        except (DecodeError, TypeError, ValueError, RecursionError):
            return None

    def write_result(msg: Any) -> str | None:
        """A RESULT's body (one per run a node reports)."""
        sender = sender_text(msg.sender)
        task, run_id, outcome, error = msg.task, msg.run_id, msg.outcome, msg.error
        term, slot, duration = msg.term, msg.slot, msg.duration_ms
        if (sender is None or type(task) is not str or type(run_id) is not str
                or type(outcome) is not str or type(error) is not str or type(term) is not int
                or type(slot) is not int or type(duration) is not float):
            return None
        # (inline, not a helper per field: six calls were a third of this function's time)
        if not (len(task) <= _S and len(run_id) <= _S and len(outcome) <= _S
                and len(error) <= _S and (task + run_id + outcome + error).isascii()
                and -_L <= term < _L and -_L <= slot < _L and math.isfinite(duration)):
            return None
        state = state_text(msg.state, "result.state")
        if state is None:
            return None
        return (f'{{"sender":{sender},"term":{term},"task":{_quote(task)},'
                f'"run_id":{_quote(run_id)},"slot":{slot},"outcome":{_quote(outcome)},'
                f'"state":{state},"duration_ms":{duration!r},"error":{_quote(error)}}}')

    def write_result_ack(msg: Any) -> str | None:
        """A RESULT_ACK's body (one per run another node reports)."""
        sender = sender_text(msg.sender)
        task, run_id, term = msg.task, msg.run_id, msg.term
        if (sender is None or type(task) is not str or type(run_id) is not str
                or type(term) is not int or not (len(task) <= _S and len(run_id) <= _S
                                                  and (task + run_id).isascii()
                                                  and -_L <= term < _L)):
            return None
        return (f'{{"sender":{sender},"term":{term},"task":{_quote(task)},'
                f'"run_id":{_quote(run_id)}}}')

    def write_execute(msg: Any) -> str | None:
        """An EXECUTE's body (one per dispatch)."""
        sender = sender_text(msg.sender)
        task, run_id, init = msg.task, msg.run_id, msg.init
        term, slot, timeout, due, deadline = (msg.term, msg.slot, msg.timeout_ms, msg.due_ms,
                                              msg.deadline_ms)
        if (sender is None or type(task) is not str or type(run_id) is not str
                or type(term) is not int or type(slot) is not int
                or type(timeout) is not int or type(init) is not bool
                or type(due) is not int or type(deadline) is not int):
            return None
        if not (len(task) <= _S and len(run_id) <= _S and (task + run_id).isascii()
                and -_L <= term < _L and -_L <= slot < _L and -_L <= timeout < _L
                and -_L <= due < _L and -_L <= deadline < _L):
            return None
        state = state_text(msg.state, "execute.state")
        if state is None:
            return None
        return (f'{{"sender":{sender},"term":{term},"task":{_quote(task)},'
                f'"run_id":{_quote(run_id)},"slot":{slot},"state":{state},'
                f'"timeout_ms":{timeout},"init":{"true" if init else "false"},'
                f'"due_ms":{due},"deadline_ms":{deadline}}}')

    return {MESSAGE_KINDS["result"]: write_result, MESSAGE_KINDS["result_ack"]: write_result_ack,
            MESSAGE_KINDS["execute"]: write_execute}
