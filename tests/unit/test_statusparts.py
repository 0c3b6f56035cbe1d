"""A status too big for one message travels in parts (clerk._statusparts): each part within the
message limit, the parts put back into the same dict, one snapshot per status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clerk._codec import MAX_MESSAGE_BYTES, decode, encode
from clerk._messages import Peer, Status, StatusReply
from clerk._statusparts import StatusParts, join_parts, split_status

PEER = Peer("n1@127.0.0.1", "127.0.0.1:7400", "abc+t+b", 0)


def big_status(tasks: int, members: int = 3, names: int = 0) -> dict[str, Any]:
    """A status shaped like a node's: ~500 bytes a task row, members with task lists."""
    rows = [{"name": f"pkg.module:Task{i:05d}", "interval_ms": 1000, "enabled": True,
             "runs": {"ok": i, "error": 0, "timeout": 0, "skipped": 1},
             "last_run": {"slot": 1_700_000 + i, "node": "n2@127.0.0.1", "outcome": "error",
                          "duration_ms": 1.5, "error": "Traceback ...\nValueError: é ü \"x\""},
             "lineage": {"term": 3, "node": "n1@127.0.0.1", "at": 1.7e9}, "version": i,
             "next_due": "2026-12-02T18:00:00+00:00", "paused": False, "conflicts": 0}
            for i in range(tasks)]
    return {"node": "n1@127.0.0.1", "role": "follower", "manager": "n2@127.0.0.1", "term": 4,
            "members": [{"name": f"n{j}@127.0.0.1", "alive": True,
                         "tasks": [f"pkg.module:Task{i:05d}" for i in range(names)]}
                        for j in range(members)],
            "tasks": rows, "bad_frames": {}}


def wire(body: Any) -> Any:
    """``body`` through a real STATUS_REPLY: encoded (within the limit) and decoded."""
    frames = encode(StatusReply(PEER, 4, body))
    assert sum(len(f) for f in frames) <= MAX_MESSAGE_BYTES
    msg = decode(frames)
    assert isinstance(msg, StatusReply)
    return msg.status


def fetch(node: StatusParts, st: dict[str, Any]) -> dict[str, Any]:
    first = wire(node.first(st))
    info = first.get("parts")
    if info is None:
        return first  # type: ignore[no-any-return]
    parts = [wire(node.part(info["snapshot"], k))["chunks"] for k in range(1, info["count"] + 1)]
    return join_parts(first, parts)


def test_a_small_status_is_one_message_as_before() -> None:
    st = big_status(10)
    assert split_status(st) == (st, [])
    node = StatusParts(lambda: 0.0)
    assert node.first(st) is st and node.served == 0


@pytest.mark.parametrize("tasks", [3_000, 10_000])
def test_a_big_status_comes_back_whole_from_parts_each_within_the_limit(tasks: int) -> None:
    st = big_status(tasks)
    assert len(json.dumps(st)) > MAX_MESSAGE_BYTES  # would not be sent in one message
    node = StatusParts(lambda: 0.0)
    assert fetch(node, st) == st
    assert node.served == 1


def test_members_task_lists_go_in_the_parts_when_the_summary_alone_is_too_big() -> None:
    st = big_status(100, members=8, names=10_000)  # 8 members x 10,000 names: ~2.6 MB
    summary, parts = split_status(st)
    assert parts and all("tasks" not in m for m in summary["members"])
    assert fetch(StatusParts(lambda: 0.0), st) == st


def test_every_part_is_of_one_snapshot_and_a_gone_one_says_so() -> None:
    now = [0.0]
    node = StatusParts(lambda: now[0], ttl=30.0, keep=2)
    st = big_status(3_000)
    first = node.first(st)
    snap = first["parts"]["snapshot"]
    st["tasks"][0]["version"] = -1  # the node's status moves on: the parts do not
    part = node.part(snap, 1)
    assert part["part"] == 1 and '"version":0' in "".join(part["chunks"])
    assert node.part(snap, 0) == {"gone": snap}  # out of range
    assert node.part(snap, first["parts"]["count"] + 1) == {"gone": snap}
    assert node.part("nope", 1) == {"gone": "nope"}
    now[0] = 31.0
    assert node.part(snap, 1) == {"gone": snap}  # expired
    a = node.first(st)["parts"]["snapshot"]
    node.first(st)
    node.first(st)  # at most two kept: the oldest dropped
    assert node.part(a, 1) == {"gone": a}


def test_a_plain_status_request_is_what_it_always_was_on_the_wire() -> None:
    """An older node refuses fields it does not know: STATUS's new ones are left out while
    None, so only a request for a part (sent only to a node that announced parts) has them."""
    body = json.loads(encode(Status(PEER, 0))[2])
    assert set(body) == {"sender", "term"}
    msg = decode(encode(Status(PEER, 0, snapshot="ab", part=2)))
    assert isinstance(msg, Status) and (msg.snapshot, msg.part) == ("ab", 2)
