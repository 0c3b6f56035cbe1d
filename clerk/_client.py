"""Talking to a node from outside the cluster: the status request used by ``clerk status``,
``Node.status()`` and ``LocalCluster``. Same cookie, same CURVE keys as the nodes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import zmq

from clerk._codec import DecodeError, decode, encode
from clerk._errors import ControlError, NotReachableError
from clerk._messages import Control, ControlReply, Message, Peer, Status, StatusReply
from clerk._security import CurveKeys
from clerk._statusparts import join_parts
from clerk._transport import resolve_host

__all__ = ["ask_each", "request_control", "request_status"]

#: A client retries a command this often while the cluster has no manager (an election takes
#: ~50 ms after a crash, under a second after a freeze).
CONTROL_RETRY_S = 0.05
#: Stands for a brief STATUS in ``_socket`` (made there with a fresh client identity).
BRIEF = Status(Peer("status@client", "", "", 0), 0, part=0)
#: Times a status in parts is asked for again when the node dropped its parts meanwhile.
PARTS_ATTEMPTS = 3


def _socket(ctx: zmq.Context, address: str, keys: CurveKeys | None,
            msg: Message | None = None) -> zmq.Socket:
    host, _, port = address.rpartition(":")
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    if keys is not None:
        sock.curve_serverkey = keys.public
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
    try:
        sock.connect(f"tcp://{resolve_host(host)}:{port}")
        if msg is None:
            msg = Status(Peer("status@client", "", secrets.token_hex(6), 0), 0)
        elif msg == BRIEF:
            msg = Status(Peer("status@client", "", secrets.token_hex(6), 0), 0, part=0)
        sock.send_multipart(encode(msg))
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _reply(sock: zmq.Socket) -> Any:
    try:
        msg = decode(sock.recv_multipart(zmq.NOBLOCK))
    except (zmq.ZMQError, DecodeError):
        return None
    return msg.status if isinstance(msg, StatusReply) else None


def _rest(sock: zmq.Socket, first: Any, deadline: float) -> Any:
    """The whole status from the first reply ``first``: itself, or (a status in parts,
    :mod:`clerk._statusparts`) it with the parts asked for one by one on ``sock`` before
    ``deadline``. None if a part did not come in time or the node no longer holds them
    (``gone``: the caller asks again)."""
    if not isinstance(first, dict) or not isinstance(first.get("parts"), dict):
        return first
    info = first["parts"]
    snapshot, count = info.get("snapshot"), info.get("count")
    if not isinstance(snapshot, str) or not isinstance(count, int):
        return None
    me = Peer("status@client", "", secrets.token_hex(6), 0)
    parts: list[list[str]] = []
    for k in range(1, count + 1):
        try:
            sock.send_multipart(encode(Status(me, 0, snapshot=snapshot, part=k)))
        except zmq.ZMQError:
            return None
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
            return None
        body = _reply(sock)
        if not isinstance(body, dict) or body.get("part") != k \
                or not isinstance(body.get("chunks"), list):
            return None
        parts.append(body["chunks"])
    try:
        return join_parts(first, parts)
    except ValueError:
        return None


def _parts_time(first: Any, timeout: float) -> float:
    """The time for the parts of a status: ``timeout`` per part."""
    info = first.get("parts") if isinstance(first, dict) else None
    count = info.get("count") if isinstance(info, dict) else None
    return timeout * (count if isinstance(count, int) and count > 0 else 1)


def _ask(ctx: zmq.Context, address: str, keys: CurveKeys | None, timeout: float) -> Any:
    """One node's status within ``timeout`` per message (a status in parts: a few more
    messages); a status in parts whose snapshot is gone before its last part is asked again
    (twice at most)."""
    for _ in range(PARTS_ATTEMPTS):
        try:
            sock = _socket(ctx, address, keys)
        except (OSError, zmq.ZMQError):
            return None
        try:
            if not sock.poll(int(timeout * 1000), zmq.POLLIN):
                return None
            first = _reply(sock)
            status = _rest(sock, first, time.monotonic() + _parts_time(first, timeout))
        finally:
            sock.close(linger=0)
        if status is not None or not isinstance(first, dict):
            return status
    return None


def ask_each(
    addresses: Sequence[str],
    *,
    keys: CurveKeys | None,
    timeout: float = 1.0,
    ctx: zmq.Context | None = None,
    brief: bool = False,
) -> dict[str, dict[str, Any] | None]:
    """Ask every address at once (one request each, answers awaited in parallel): the status
    each node reports, or None for a node that did not answer within ``timeout``. Used by
    :class:`clerk.testing.LocalCluster` to take all views within a few milliseconds.
    ``brief``: the status without the tasks (the node must be of this build or later: an
    older one drops the request, and is reported as not answering)."""
    own = ctx is None
    context = zmq.Context() if ctx is None else ctx
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(addresses)
    socks: dict[zmq.Socket, str] = {}
    try:
        poller = zmq.Poller()
        for address in addresses:
            try:
                sock = _socket(context, address, keys, BRIEF if brief else None)
            except (OSError, zmq.ZMQError):
                continue
            socks[sock] = address
            poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        waiting = set(socks)
        big: list[zmq.Socket] = []  # answered with the first of several parts
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock, _ in poller.poll(max(1, int(left * 1000))):
                waiting.discard(sock)
                poller.unregister(sock)
                status = _reply(sock)
                out[socks[sock]] = status if isinstance(status, dict) else None
                if status is not None and "parts" in status:
                    big.append(sock)
        for sock in big:  # the rest of a status in parts, once every first reply is in
            first = out[socks[sock]]
            status = _rest(sock, first, time.monotonic() + _parts_time(first, timeout))
            out[socks[sock]] = status if isinstance(status, dict) else None
    finally:
        for sock in socks:
            sock.close(linger=0)
        if own:
            context.term()
    return out


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


def _ask_control(ctx: zmq.Context, address: str, keys: CurveKeys | None, msg: Control,
                 timeout: float) -> ControlReply | None:
    try:
        sock = _socket(ctx, address, keys, msg)
    except (OSError, zmq.ZMQError):
        return None
    try:
        if not sock.poll(max(1, int(timeout * 1000)), zmq.POLLIN):
            return None
        reply = decode(sock.recv_multipart(zmq.NOBLOCK))
    except (zmq.ZMQError, DecodeError):
        return None
    finally:
        sock.close(linger=0)
    return reply if isinstance(reply, ControlReply) else None


def request_control(
    addresses: Sequence[str], op: str, task: str, *, keys: CurveKeys | None,
    timeout: float = 5.0,
) -> Any:
    """Send an operator's command (``pause``, ``resume``, ``trigger``, ``show``) about
    ``task`` through the first of ``addresses`` that answers, and return the result the node
    reports once it is applied (see :mod:`clerk._ops`).

    A follower names the manager and the command is sent there (the status records the
    follower as the node it came through); while there is no manager it is retried until
    ``timeout``. Raises :class:`ControlError` when the cluster refuses it (unknown task, a
    trigger while a run is in flight) and :class:`NotReachableError` when nobody answers.
    """
    me = Peer("ops@client", "", secrets.token_hex(6), 0)
    deadline = time.monotonic() + timeout
    via = ""
    last_error = ""
    ctx = zmq.Context()
    try:
        targets = list(addresses)
        while time.monotonic() < deadline:
            redirected = False
            for address in targets:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                reply = _ask_control(ctx, address, keys, Control(me, 0, op, task, via),
                                     min(left, 2.0))
                if reply is None:
                    continue
                if reply.ok:
                    return reply.result
                if reply.manager:  # a follower: go to the manager, say where we came from
                    via = via or reply.sender.name
                    targets = [reply.manager, *addresses]
                    redirected = True
                    break
                if not reply.error.startswith("no manager yet"):
                    raise ControlError(reply.error)
                last_error = reply.error
                via = via or reply.sender.name
                break
            if not redirected:
                time.sleep(CONTROL_RETRY_S)
    finally:
        ctx.term()
    raise NotReachableError(
        f"{op} {task!r}: " + (last_error or f"no clerk node answered at {', '.join(addresses)} "
                              f"within {timeout:g}s (not running, or a different cookie?)"))
