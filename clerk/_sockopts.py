"""How every TCP socket of a node recovers after a partition heals: the socket options.

Without these a connection that lived through a partition sits in TCP's retry back-off after
the heal (SYNs resent after 1, 3, 7, 15 s; data after exponentially growing RTOs), and nodes
see each other again seconds late:

* ``TCP_MAXRT`` (Linux's ``TCP_USER_TIMEOUT``): a connection whose data stays unacknowledged
  for ``MAXRT_MS`` is closed by the kernel and ZeroMQ reconnects. Free while the network works
  (the peer's *kernel* acknowledges, so a busy or paused peer keeps its connections), it
  catches every connection that carries traffic within a second of a partition.
* ZeroMQ heartbeats, for connections that carry nothing: a PING a second from the connecting
  side (DEALER, REQ; a ROUTER pinging too would double them), closed if unanswered for
  ``HEARTBEAT_TIMEOUT``. So within ~2 s of a partition every connection across it is in
  ZeroMQ's reconnect loop (a SYN at least every half second; an ``up`` event when one gets
  through sends our claim at once: :func:`clerk._joining.on_peer_up`), not idle until the
  protocol first writes to it late in the partition, into TCP's back-off (without PINGs, 3 s
  heals took ~1.1 s instead of ~0.3). PINGs every 200 ms were ~30 of an idle manager's ~44
  frames per member per second, half its agent's CPU (ZeroMQ's I/O thread); at 1 s, 6. The
  timeout is above the manager timeout, and ZeroMQ's I/O thread answers PINGs while the loop
  is busy. The ROUTER closes a connection silent for the TTL its peer's PINGs carry.
* ``CONNECT_TIMEOUT``: a connect that got no answer is abandoned and retried (a fresh SYN)
  after ``RECONNECT_IVL``, capped by ``RECONNECT_IVL_MAX``, instead of waiting for the
  kernel's SYN back-off.
* ``HANDSHAKE_IVL``: a CURVE handshake that stalls (a peer cut off mid-handshake) is dropped.
* TCP keepalive: an idle connection through a stateful middlebox stays known to it, and a
  peer that vanished is found even if ZeroMQ heartbeats are off on the other side.
"""

from __future__ import annotations

import zmq

__all__ = [
    "CONNECT_TIMEOUT_MS",
    "HANDSHAKE_IVL_MS",
    "HEARTBEAT_IVL_MS",
    "HEARTBEAT_TIMEOUT_MS",
    "HEARTBEAT_TTL_MS",
    "KEEPALIVE_CNT",
    "KEEPALIVE_IDLE_S",
    "KEEPALIVE_INTVL_S",
    "MAXRT_MS",
    "RECONNECT_IVL_MAX_MS",
    "RECONNECT_IVL_MS",
    "tune",
]

#: Sent data unacknowledged this long closes the connection (``TCP_USER_TIMEOUT``): above the
#: manager timeout (0.7 s), so the protocol, not this, notices a silent manager; a peer's
#: kernel answers in well under a millisecond on a LAN, however loaded the peer is.
MAXRT_MS = 1000
#: ZeroMQ heartbeat: a PING a second; a connection with no answer for 1 s after one is dead
#: (above ``manager_timeout``). Every connection across a partition is closed within ~2 s.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 1000
HEARTBEAT_TTL_MS = 2000
#: Reconnect attempts every 100 ms (ZeroMQ's default), backing off to at most 200 ms.
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 200
#: A TCP connect on a LAN completes in a millisecond (the peer's kernel answers the SYN, not
#: its process, so a busy host does not slow it); 300 ms is far below the kernel's SYN back-off
#: (1, 3, 7 s). With the cap above, a node retries a lost peer at least every half second, so
#: a healed link is up again within that. (It assumes round trips well under 300 ms: a LAN.)
CONNECT_TIMEOUT_MS = 300
#: A CURVE handshake is a few round trips; ZeroMQ's default waits 30 s for a stalled one.
HANDSHAKE_IVL_MS = 2000
#: TCP keepalive: probe an idle connection after 5 s, every 1 s, give up after 3 probes.
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTVL_S = 1
KEEPALIVE_CNT = 3


def tune(sock: zmq.Socket, ping: bool = True) -> None:
    """The recovery options above, for any TCP socket of the node (a ROUTER's apply to the
    connections it accepts). ``ping=False`` (the ROUTER): no PINGs of its own."""
    if ping:
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
    sock.setsockopt(zmq.TCP_MAXRT, MAXRT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)
