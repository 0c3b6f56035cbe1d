"""A bad ``CLERK_TEST_CLOCK_OFFSET_S`` (the test-only wall clock offset, clerk._clock) is a
clear configuration error naming the variable and its value, never a traceback at import.

On main ``import clerk`` raised ValueError out of clerk._clock's import (a traceback), and so
did ``python -m clerk.node``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clerk._clock import TEST_OFFSET_ENV

pytestmark = pytest.mark.timeout(60)


def _run(args: list[str], value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, TEST_OFFSET_ENV: value}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "1e9"])
def test_import_does_not_raise(value: str) -> None:
    done = _run(["-c", "import clerk, clerk.testing, clerk._worker"], value)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("value", ["abc", "nan"])
def test_a_node_exits_2_naming_the_variable_and_the_value(value: str) -> None:
    done = _run(["-m", "clerk.node", "--name", "a@127.0.0.1", "--insecure",
                 "--no-data-dir"], value)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert TEST_OFFSET_ENV in done.stderr and repr(value) in done.stderr, done.stderr
    assert done.stderr.startswith("error: environment: "), done.stderr


def test_a_value_holding_a_colon_is_quoted_once_with_its_problem() -> None:
    """The problem is not cut out of the exception's text at its first ': ' (on main a value
    holding one was garbled: "= '1: 2': 2': not a number of seconds")."""
    done = _run(["-m", "clerk.node", "--name", "a@127.0.0.1", "--insecure",
                 "--no-data-dir"], "1: 2")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.strip() == (f"error: environment: {TEST_OFFSET_ENV} = '1: 2': not a "
                                   f"number of seconds"), done.stderr


def test_an_agent_started_without_the_pre_flight_refuses_it_too() -> None:
    """``clerk.node_spec`` in a user's own tree starts the agent with no pre-flight: a bad
    value is refused there as well (exit EXIT_CANNOT_LISTEN, not retried), naming it. On main
    that agent ran with no offset, silently (a test meant to skew its clock tested nothing)."""
    code = ("from clerk._agentboot import run; from clerk._config import NodeConfig; "
            "run(NodeConfig(name='a@127.0.0.1', insecure=True, port=1))")
    done = _run(["-c", code], "nan")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert (f"cannot start: environment: {TEST_OFFSET_ENV} = 'nan': must be a finite number "
            f"of seconds within a day (not retried)") in done.stderr, done.stderr
