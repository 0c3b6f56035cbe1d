"""Two real Transports over loopback TCP (no CURVE), for the transport's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clerk._transport import Transport
from clerk.testing import free_ports


@contextmanager
def transport_pair() -> Iterator[tuple[Transport, Transport, str]]:
    """``(a, b, b's address)``; both closed after (a test may close ``b`` itself)."""
    port_a, port_b = free_ports(2)
    a = Transport("127.0.0.1", port_a, keys=None)
    b = Transport("127.0.0.1", port_b, keys=None)
    try:
        yield a, b, f"127.0.0.1:{port_b}"
    finally:
        a.close()
        if not b.router.closed:
            b.close()
