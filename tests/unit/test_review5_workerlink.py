"""review5: the worker link's parse refused NaN and the infinities (92634c3), but not a number
that overflows to one (``1e400``): the agent took it, as json.loads does. Fixed by smalls3's
``parse_float`` hook (310d7d9); these failed on main before it."""

from __future__ import annotations

import socket

import pytest

from clerk._workerlink import parse
from tests.unit.test_executor_link import _done, _link_fake, _running


@pytest.mark.parametrize("text", ["1e400", "[1, -1e400]", '{"n": 1e999}',
                                  '["r-1", "ok", {"n": 1e400}, 0.25, ""]'])
def test_parse_refuses_a_number_that_overflows_to_an_infinity(text: str) -> None:
    """Case: a body with ``1e400`` (valid JSON text) parses to ``inf``, which the module
    docstring rules out ("no field of a RUN or DONE, nor anything in a state, is a number
    that is not finite"). Cause: clerk/_workerlink.py ``_scan``/``parse`` hook only
    ``parse_constant`` (NaN, Infinity, -Infinity); an overflowing literal goes through
    ``float`` without it. Suggested fix: ``parse_float`` refusing a non-finite value, as
    clerk/_codec.py ``_parse_float`` does (a Python call per float: ~0.1-0.2 us per DONE,
    its duration; timeit, noisy)."""
    with pytest.raises(ValueError):
        parse(text)


@pytest.mark.timeout(10)
def test_a_done_whose_state_overflows_to_an_infinity_is_not_taken_as_the_state() -> None:
    """Case: a DONE ``["r-1", "ok", {"n": 1e400}, 0.25, ""]`` is taken as an ok run with the
    state ``{"n": inf}``; its RESULT then cannot be encoded (clerk._codec refuses inf), so the
    agent logs "cannot send Result" and drops it: the manager sees a timeout, not the
    malformed reply the NaN case gets. Cause and fix: as above."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    try:
        fake = _link_fake(_running(a, "r-1"))
        _done(fake, a, b, b'["r-1", "ok", {"n": 1e400}, 0.25, ""]')
        # (main: replied ok, {"n": inf}; now the run fails at once, no state taken: smalls3)
        assert fake.malformed == 1
        [(run, outcome, state, _)] = fake.replies
        assert (run, outcome, state) == ("r-1", "error", None)
    finally:
        a.close()
        b.close()
