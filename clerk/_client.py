"""Talking to a node from outside the cluster: the status request used by ``clerk status``,
``Node.status()`` and ``LocalCluster``. Same cookie, same CURVE keys as the nodes."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import zmq

from clerk._codec import DecodeError, decode, encode
from clerk._errors import NotReachableError
from clerk._messages import Peer, Status, StatusReply
from clerk._security import CurveKeys
from clerk._transport import resolve_host

__all__ = ["request_status"]


def _ask(ctx: zmq.Context, address: str, keys: CurveKeys | None, timeout: float) -> Any:
    host, _, port = address.rpartition(":")
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    if keys is not None:
        sock.curve_serverkey = keys.public
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
    try:
        sock.connect(f"tcp://{resolve_host(host)}:{port}")
        me = Peer("status@client", "", secrets.token_hex(6), 0)
        sock.send_multipart(encode(Status(me, 0)))
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        msg = decode(sock.recv_multipart())
        return msg.status if isinstance(msg, StatusReply) else None
    except (OSError, zmq.ZMQError, DecodeError):
        return None
    finally:
        sock.close(linger=0)


def request_status(
    addresses: Sequence[str], *, keys: CurveKeys | None, timeout: float = 2.0
) -> dict[str, Any]:
    """The cluster status as seen by the first of ``addresses`` that answers.

    Raises :class:`NotReachableError` naming the addresses if none answers within ``timeout``
    each (a node of another cluster, with another cookie, never answers).
    """
    ctx = zmq.Context()
    try:
        for address in addresses:
            status = _ask(ctx, address, keys, timeout)
            if isinstance(status, dict):
                return status
    finally:
        ctx.term()
    raise NotReachableError(
        f"no clerk node answered at {', '.join(addresses)} within {timeout:g}s "
        "(not running, or a different cookie?)"
    )
