"""``Node.start()``'s error when the node ended before it answered: the agent's own words,
else how it ended. (The real processes: tests/integration/test_ports_taken.py.)"""

from __future__ import annotations

import collections

import pytest

import clerk
from supervisor import ExitReason, RestartIntensityError, ShutdownInfo, ShutdownReason

pytestmark = pytest.mark.timeout(10)


class Sink:
    def __init__(self, *errors: str) -> None:
        self.errors = collections.deque(errors, maxlen=5)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def node_with(sink: Sink) -> clerk.Node:
    node = clerk.Node(name="a@127.0.0.1", port=7400, insecure=True, data_dir=False)
    node._sink = sink  # type: ignore[assignment]
    return node


def test_the_agents_own_words_once_each() -> None:
    sink = Sink("cannot listen on a@127.0.0.1:7400: port 7400 is already in use (not retried)",
                "cannot listen on a@127.0.0.1:7400: port 7400 is already in use (not retried)")
    node = node_with(sink)
    ended = ShutdownInfo(ShutdownReason.AUTO_SHUTDOWN, "agent", ExitReason("shutdown", 2))
    error = node._start_error(ended)
    assert str(error) == ("Node(name='a@127.0.0.1', port=7400) could not start: cannot listen "
                          "on a@127.0.0.1:7400: port 7400 is already in use (not retried)")
    assert (error.node, error.exitcode) == ("a@127.0.0.1", 2) and sink.closed
    assert node._sink is None and node._sup is None  # start() may be called again


def test_an_agent_that_kept_crashing_says_so() -> None:
    info = ShutdownInfo(ShutdownReason.INTENSITY, "agent", ExitReason("abnormal", 1))
    error = node_with(Sink())._start_error(RestartIntensityError(info))
    assert error.reason == f"its agent kept crashing: {info}"
    assert error.exitcode == 1
    said = node_with(Sink("boom"))._start_error(RestartIntensityError(info))
    assert said.reason == f"boom (its agent kept crashing: {info})"


def test_an_agent_that_ended_silently_says_how() -> None:
    ended = ShutdownInfo(ShutdownReason.AUTO_SHUTDOWN, "agent", ExitReason("normal", 0))
    error = node_with(Sink())._start_error(ended)
    assert error.reason == "its agent ended (normal) without saying why"
    assert isinstance(error, clerk.ClerkError) and error.exitcode == 0
