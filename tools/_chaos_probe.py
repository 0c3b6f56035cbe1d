"""Status probe of ``tools/chaos.py``: runs inside one node's network namespace.

    ip netns exec clk-ch-n1 python tools/_chaos_probe.py ADDRESS COOKIE_FILE PERIOD_MS

Rules: every ``PERIOD_MS`` it asks the node at ``ADDRESS`` for its status (the same CURVE
request as ``clerk status``) and prints one JSON line ``{"t", "ok", "manager", "term"}`` (``t``
in wall ms, taken when the answer came; ``ok`` false when the node did not answer within the
period: stopped, restarting or dead). It exits when its stdout closes or its parent goes away,
so it never outlives the tool. The probe lives in the namespace because the namespaces' addresses
are reachable only from inside them, and a node's own address stays reachable through its
namespace's loopback even while its link is down.
"""

from __future__ import annotations

import json
import os
import sys
import time

import zmq

from clerk._client import _ask
from clerk._security import keys_from_cookie, load_cookie


def main() -> int:
    address, cookie_file, period_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keys = keys_from_cookie(load_cookie(cookie_file))
    parent = os.getppid()
    ctx = zmq.Context()
    period = period_ms / 1000
    try:
        while os.getppid() == parent:
            began = time.monotonic()
            st = _ask(ctx, address, keys, period)
            row = {"t": round(time.time() * 1000, 1), "ok": isinstance(st, dict),
                   "manager": st.get("manager") if isinstance(st, dict) else None,
                   "term": st.get("term") if isinstance(st, dict) else None}
            try:
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                return 0
            # Pace the polls: one per period, however long the answer took.
            time.sleep(max(0.0, period - (time.monotonic() - began)))
    except KeyboardInterrupt:
        return 0
    finally:
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
