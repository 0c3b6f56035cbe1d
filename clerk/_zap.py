"""ZAP (RFC 27) for the node's mailbox: admit CURVE clients holding the cluster's key, nobody
else. The handler is a REP socket on the transport's own loop (clerk._transport), bound at
``ZAP_ENDPOINT`` in the transport's ZeroMQ context."""

from __future__ import annotations

import zmq

__all__ = ["ZAP_ENDPOINT", "answer_zap"]

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def answer_zap(zap: zmq.Socket, public_key: bytes) -> bool | None:
    """Answer one waiting ZAP request: accepted only for the CURVE client key ``public_key``
    (z85, the cluster's). True if admitted, False if refused, None if nothing was waiting."""
    try:
        frames = zap.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
    version = frames[0] if frames else b"1.0"
    request_id = frames[1] if len(frames) > 1 else b""
    ok = (
        len(frames) >= 7
        and frames[0] == b"1.0"
        and frames[5] == b"CURVE"
        and frames[6] == _z85_decode(public_key)
    )
    status = [b"200", b"OK"] if ok else [b"400", b"not a member of this cluster"]
    zap.send_multipart([version, request_id, *status, b"", b""])
    return ok


def _z85_decode(text: bytes) -> bytes:
    from zmq.utils import z85

    return z85.decode(text)
