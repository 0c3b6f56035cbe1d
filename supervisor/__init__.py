"""Erlang/OTP-style supervision trees for OS processes.

::

    from supervisor import ChildSpec, Supervisor

    sup = Supervisor(
        children=[
            ChildSpec(id="poller", start="myapp.jobs:poll", args=(5,)),
            ChildSpec(id="web", command=["gunicorn", "myapp:app"], restart="transient"),
        ],
        strategy="one_for_one", intensity=1, period=5,
    )
    sup.run()   # start, wait; SIGTERM/SIGINT stop it in order; returns an exit code

Operators steer a running tree through its control socket: ``supervisor ctl status``
(see :mod:`supervisor._ctl`) or, from Python, :class:`ControlClient`.

The full semantics (strategies, restart types, intensity, shutdown, significant children,
escalation, logging, the no-orphans mechanism) are documented in
:mod:`supervisor._supervisor`, before the code.
"""

from supervisor import _clash  # noqa: F401  (first: see there)
from supervisor._client import ControlClient, ControlError
from supervisor._errors import (
    ChildNotFoundError,
    ChildStartError,
    ChildStateError,
    InvalidSpecError,
    NotRunningError,
    RestartIntensityError,
    SupervisorError,
)
from supervisor._spec import HELD_SIGNALS, ChildSpec
from supervisor._supervisor import Supervisor
from supervisor._supervisor import __doc__ as _semantics
from supervisor._types import (
    ChildInfo,
    Event,
    ExitReason,
    ReloadResult,
    ShutdownInfo,
    ShutdownReason,
)

__clerk_supervisor__ = True  # clerk checks it: ``import supervisor`` found this package

__doc__ = (__doc__ or "") + "\n" + (_semantics or "")

__all__ = [
    "HELD_SIGNALS",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildSpec",
    "ChildStartError",
    "ChildStateError",
    "ControlClient",
    "ControlError",
    "Event",
    "ExitReason",
    "InvalidSpecError",
    "NotRunningError",
    "ReloadResult",
    "RestartIntensityError",
    "ShutdownInfo",
    "ShutdownReason",
    "Supervisor",
    "SupervisorError",
]
