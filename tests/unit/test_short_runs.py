"""``short_runs`` (whether a dispatch may wait for the next replication round) with a fast path
for a float duration: the same answer as the plain check for any ``last``."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clerk._replication import SHORT_RUN_MS, short_runs


def _plain(last: Any) -> bool:
    """``short_runs`` as it was."""
    if not isinstance(last, dict) or last.get("outcome") not in ("ok", "error"):
        return False
    duration = last.get("duration_ms")
    return (isinstance(duration, int | float) and not isinstance(duration, bool)
            and duration < SHORT_RUN_MS)


class _Dict(dict[str, Any]):
    pass


_durations = (st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans()
              | st.none() | st.text(max_size=3) | st.just(SHORT_RUN_MS))
_lasts = (st.none() | st.integers() | st.lists(st.integers(), max_size=2)
          | st.fixed_dictionaries({"outcome": st.sampled_from(["ok", "error", "timeout", 1]),
                                   "duration_ms": _durations})
          | st.fixed_dictionaries({"outcome": st.sampled_from(["ok", "error"])},
                                  optional={"duration_ms": _durations}).map(_Dict))


@given(_lasts)
def test_the_answer_is_the_plain_checks(last: Any) -> None:
    assert short_runs(last) is _plain(last)
