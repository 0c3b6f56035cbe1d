import pytest

from supervisor.testing import WaitTimeout, wait_until


def test_wait_until_returns_value():
    calls = iter([0, 0, 5])
    assert wait_until(lambda: next(calls), timeout=1) == 5


def test_wait_until_times_out_with_message():
    with pytest.raises(WaitTimeout, match="never"):
        wait_until(lambda: False, timeout=0.05, message="never")
