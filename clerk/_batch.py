"""Batches: what one loop turn sends to one peer, as one ZeroMQ message.

Every ZeroMQ send wakes the I/O thread, costs a CURVE box and a TCP write, and every receive
a poll wake-up and a ``recv`` per frame. A manager's dispatch tick that starts ten runs on one
node, or the RESULT_ACKs and the heartbeat it owes one member after a turn, used to be ten (or
three) of each; now they are one.

Rules:

* **Wire.** A batch is three frames, like any message: ``MAGIC``, ``b"batch"``, and a body
  holding the messages one after the other, each as ``>BI`` (kind length, body length), the
  kind, the body: exactly frames 1 and 2 of the message sent alone. One frame, so the
  ROUTER's ``MAXMSGSIZE`` bounds a batch as it bounds a message, and CURVE boxes it once.
* **Who gets batches.** Only a peer that announced it reads them: a node's incarnation holds
  :data:`BATCH_MARK`, last (builds before ``CLOCK_MARK`` test ``endswith``:
  ``clerk._agent.INCARNATION_MARKS``). Incarnations are opaque strings to every node, so a
  ``PROTOCOL_VERSION`` 2 node that predates batches reads this one's messages as before.
  Every message names its sender, so a node learns from what it receives which addresses
  read batches, and forgets it when a message from that address says otherwise (a node
  restarted on an older build). A peer not known to read them gets each message alone; a
  node that predates batches and receives one anyway drops it as an unknown kind (counted,
  never raised: the codec's rule).
* **Checked as if sent alone.** Each message in a batch goes through :func:`decode` (size,
  version, kind, every field), and every one must name the same sender as the first: a node
  packs only its own messages. A batch that fails any check (its framing, a message in it, a
  second sender, more than :data:`BATCH_MAX` messages, none at all) is dropped whole and
  counted by reason like any malformed frame: an honest sender only packs messages that
  encoded, so one bad message means the batch is not one of ours.
* **Order.** Messages to one peer leave in the order they were sent, and are handled in that
  order on receipt. A turn with more than fits one batch (:data:`BATCH_MAX` messages or the
  size limit) sends several, in order; one message alone goes without the envelope.
* **Latency.** Nothing waits for more messages: the agent flushes at the end of every loop
  turn (after a tick; after a poll, first the executor's results, then after the inbound
  messages), before it waits again. A turn that drains many inbound messages also flushes
  between two of them once its oldest queued message has waited :data:`FLUSH_AFTER`: on a
  loaded machine a turn can take tens of milliseconds of wall time (measured: 50-120 ms at a
  load average of 40 on 2 cores), and its first RESULTs and EXECUTEs must not wait for its
  end (they did, and runs went stale). The messages one inbound message (or batch) causes
  always go together.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

from clerk._codec import MAGIC, MAX_MESSAGE_BYTES, DecodeError, decode, decode_body
from clerk._messages import Message, Peer

__all__ = [
    "BATCH_KIND",
    "BATCH_MARK",
    "BATCH_MAX",
    "FLUSH_AFTER",
    "Coalescer",
    "decode_batch",
    "decode_frames",
    "pack",
    "reads_batches",
]

BATCH_KIND = b"batch"
#: The end of the incarnation of a node that reads batches (see the module docstring).
BATCH_MARK = "+b"
#: Messages in one batch at most. A manager's turn at 2,000 runs/s holds a few dozen messages
#: for one peer; the bound keeps what one frame can make a node handle in one go near what
#: a turn's worth of separate frames would (the loop drains at most DRAIN_MESSAGES a turn).
BATCH_MAX = 256
#: How long a queued message may wait for the rest of its turn (seconds). A quiet machine's
#: turn is shorter (tens to hundreds of microseconds: nothing changes there); on a loaded one
#: it bounds what batching adds to a hop, well under the dispatch lead (20 ms) and the
#: lateness goals (p99 <= 2 ms), while the messages of one burst still go together.
FLUSH_AFTER = 0.0005
_ITEM = struct.Struct(">BI")
_ITEM_SIZE = _ITEM.size


def reads_batches(peer: Peer) -> bool:
    """The node ``peer`` announced that it reads batches."""
    return BATCH_MARK in peer.incarnation


def pack(messages: list[list[bytes]], max_bytes: int = MAX_MESSAGE_BYTES) -> list[list[bytes]]:
    """``messages`` (encoded frames, in order) as few ZeroMQ messages as fit: batches of at
    most ``BATCH_MAX`` messages and ``max_bytes``; a message alone goes as it is."""
    out: list[list[bytes]] = []
    group: list[bytes] = []
    count = 0
    size = len(MAGIC) + len(BATCH_KIND)

    def close() -> None:
        if count == 1:
            out.append([MAGIC, group[1], group[2]])
        elif count:
            out.append([MAGIC, BATCH_KIND, b"".join(group)])

    for frames in messages:
        kind, body = frames[1], frames[2]
        item = _ITEM_SIZE + len(kind) + len(body)
        if count and (count >= BATCH_MAX or size + item > max_bytes):
            close()
            group, count, size = [], 0, len(MAGIC) + len(BATCH_KIND)
        group += (_ITEM.pack(len(kind), len(body)), kind, body)
        count += 1
        size += item
    close()
    return out


def decode_batch(frames: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> list[Message]:
    """The messages of a batch (``frames[1] == BATCH_KIND``), in order; raises
    :class:`DecodeError` (only) if the batch or any message in it is invalid."""
    head, body = frames[0], frames[2]
    if head != MAGIC:
        decode([head, b"", b""])  # the codec's own magic/version errors
    if len(head) + len(frames[1]) + len(body) > max_bytes:
        raise DecodeError("size", f"batch of {len(body)} bytes is over the {max_bytes} limit")
    # Framing first (headers only), then the messages: a batch that is malformed as a whole
    # costs no decoding, however many messages it claims.
    if type(body) is not bytes:
        body = bytes(body)  # (what the loop receives is bytes: a test's frames may not be)
    items: list[tuple[bytes, bytes]] = []
    unpack = _ITEM.unpack_from
    at, end = 0, len(body)
    while at < end:
        if len(items) >= BATCH_MAX:
            raise DecodeError("batch", f"more than {BATCH_MAX} messages in a batch")
        if at + _ITEM_SIZE > end:
            raise DecodeError("batch", f"truncated item header at byte {at}")
        klen, blen = unpack(body, at)
        at += _ITEM_SIZE
        mid = at + klen
        stop = mid + blen
        if stop > end:
            raise DecodeError("batch", f"item of {klen} + {blen} bytes overruns the batch")
        kind = body[at:mid]
        if kind == BATCH_KIND:
            raise DecodeError("batch", "a batch inside a batch")
        items.append((kind, body[mid:stop]))
        at = stop
    if not items:
        raise DecodeError("batch", "an empty batch")
    # Each message as :func:`decode` checks one sent alone: the header and the size it would
    # check are the batch's, checked above (an item is smaller than the batch holding it).
    first = decode_body(*items[0])
    out = [first]
    sender = first.sender
    for kind, item in items[1:]:
        msg = decode_body(kind, item)
        if msg.sender is not sender and msg.sender != sender:  # (the codec's cached Peer)
            raise DecodeError("batch_sender", f"a batch from {sender.name!r} "
                              f"holds a message from {msg.sender.name!r}")
        out.append(msg)
    return out


def decode_frames(frames: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> list[Message]:
    """The message(s) in one ZeroMQ message: a batch's, or the one :func:`decode` reads."""
    if len(frames) == 3 and frames[1] == BATCH_KIND:
        return decode_batch(frames, max_bytes)
    return [decode(frames, max_bytes)]


class Coalescer:
    """What this node sends in one loop turn, by peer, until :meth:`flush`.

    ``stats``: ``messages_sent`` (protocol messages), ``batches_sent`` (ZeroMQ messages that
    carried several of them), ``messages_received`` and ``batches_received`` (counted by the
    agent as it decodes)."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.readers: set[str] = set()  # addresses known to read batches
        self.stats: Counter[str] = Counter()
        self._queued: dict[str, list[list[bytes]]] = {}
        self._last: Peer | None = None
        self._alone: set[int] = set()  # ids of queued frames that go outside batches (add)
        #: When the oldest message now queued was queued (monotonic seconds).
        self.since = 0.0

    def learn(self, peer: Peer) -> None:
        """A message from ``peer`` arrived: does its address read batches?"""
        if peer is self._last:  # the codec hands out the same Peer for the same sender
            return
        self._last = peer
        if reads_batches(peer):
            self.readers.add(peer.address)
        else:
            self.readers.discard(peer.address)

    def add(self, to: str, frames: list[bytes], now: float, alone: bool = False) -> None:
        """Queue ``frames`` for ``to`` (``now``: monotonic seconds, the caller's clock).
        ``alone``: a message in another node's name (a HANDOVER passed on,
        ``clerk._handover.forward``) goes outside any batch, in its place in the order: a
        batch holds only its sender's own messages, and its receiver drops one that does not
        (with every message in it)."""
        if not self._queued:
            self.since = now
        if alone:
            self._alone.add(id(frames))  # (the frames are held until flush: ids stay unique)
        queued = self._queued.get(to)
        if queued is None:
            self._queued[to] = [frames]
        else:
            queued.append(frames)

    def __bool__(self) -> bool:
        return bool(self._queued)

    def overdue(self, now: float) -> bool:
        """Something has waited :data:`FLUSH_AFTER` or longer."""
        return bool(self._queued) and now - self.since >= FLUSH_AFTER

    def flush(self, send: Callable[[str, list[bytes]], None]) -> None:
        """Hand what was queued to ``send(address, frames)``: per peer in order, as batches
        to a peer that reads them."""
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        alone, self._alone = self._alone, set()
        stats = self.stats
        for to, messages in queued.items():
            stats["messages_sent"] += len(messages)
            if len(messages) == 1 or to not in self.readers:
                for frames in messages:
                    send(to, frames)
                continue
            runs: list[list[list[bytes]]] = [messages]
            if alone:  # split at each message that goes alone, keeping the order
                runs = []
                run: list[list[bytes]] = []
                for frames in messages:
                    if id(frames) in alone:
                        runs += [run, [frames]]
                        run = []
                    else:
                        run.append(frames)
                runs.append(run)
            for run in runs:
                for frames in pack(run, self.max_bytes):
                    if frames[1] == BATCH_KIND:
                        stats["batches_sent"] += 1
                    send(to, frames)
