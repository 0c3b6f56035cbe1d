"""The marks a node's incarnation announces (clerk._agent.INCARNATION_MARKS): every reader of
this build recognises each of them, and a build from before the clock mark (which tests
``endswith(BATCH_MARK)``) still sees that this one reads batches. The clean-clone CI at
e4efa42 failed test_batch_wire: CLOCK_MARK was appended after BATCH_MARK, and no node sent
another a batch."""

from __future__ import annotations

import secrets

from clerk._agent import INCARNATION_MARKS
from clerk._batch import BATCH_MARK, reads_batches
from clerk._clockskew import reads_clock
from clerk._histdelta import reads_hist
from clerk._messages import (
    Peer,
    reads_merged,
    reads_parts,
    reads_raw_rows,
    reads_table_at,
    says_handed,
)
from clerk._tasksets import reads_digests


def _peer() -> Peer:
    return Peer("n1", "127.0.0.1:7400", secrets.token_hex(6) + INCARNATION_MARKS, 0)


def test_this_build_reads_every_mark_it_announces() -> None:
    peer = _peer()
    for reads in (reads_batches, reads_merged, reads_parts, reads_raw_rows, reads_table_at,
                  says_handed):
        assert reads(peer), reads.__name__
    for reads_inc in (reads_clock, reads_hist, reads_digests):
        assert reads_inc(peer.incarnation), reads_inc.__name__


def test_an_older_build_sees_batches_last() -> None:
    # (1ff308e's clerk._batch.reads_batches: peer.incarnation.endswith(BATCH_MARK))
    assert _peer().incarnation.endswith(BATCH_MARK)


def test_a_peer_without_the_mark_gets_no_batch() -> None:
    marks = INCARNATION_MARKS.replace(BATCH_MARK, "")
    assert not reads_batches(Peer("n2", "127.0.0.1:7401", "0123456789ab" + marks, 0))
