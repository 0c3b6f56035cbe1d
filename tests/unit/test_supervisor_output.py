"""Rotation by size (RotatingFile) and the id before each line of a Python child."""

import io
import os

import pytest

from supervisor._boot import LabelledStream
from supervisor._client import follow, last_lines
from supervisor._output import RotatingFile

pytestmark = pytest.mark.timeout(10)


def files(path):
    out = {}
    for name in sorted(os.listdir(os.path.dirname(path))):
        with open(os.path.join(os.path.dirname(path), name), "rb") as f:
            out[name] = f.read()
    return out


def test_rotates_before_a_write_would_pass_max_bytes_keeping_whole_lines(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=10, backups=2)
    rf.write(b"aaaa\nbbbb\n")  # exactly 10: fits
    rf.write(b"cc\n")  # would be 13: rotate first
    rf.close()
    assert files(path) == {"w.out": b"cc\n", "w.out.1": b"aaaa\nbbbb\n"}


def test_a_chunk_is_cut_after_the_last_line_that_fits(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=10, backups=3)
    rf.write(b"1234\n")
    rf.write(b"5678\nabcd\nefgh\nij\n")  # 5 + 18: "5678\n" fits, the rest goes on
    rf.close()
    got = files(path)
    assert got == {"w.out": b"ij\n", "w.out.1": b"abcd\nefgh\n", "w.out.2": b"1234\n5678\n"}


def test_only_backups_old_files_are_kept_and_none_exceeds_max_bytes(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=20, backups=2)
    data = b"".join(b"line %03d\n" % i for i in range(100))  # 9 bytes a line
    for i in range(0, len(data), 7):  # odd chunk sizes, as pipes deliver them
        rf.write(data[i : i + 7])
    rf.close()
    got = files(path)
    assert set(got) == {"w.out", "w.out.1", "w.out.2"}
    assert all(0 < len(v) <= 20 for v in got.values())
    tail = got["w.out.2"] + got["w.out.1"] + got["w.out"]
    assert data.endswith(tail)


def test_a_line_longer_than_a_file_is_split(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=4, backups=5)
    rf.write(b"0123456789\n")
    rf.close()
    got = files(path)
    assert all(len(v) <= 4 for v in got.values())
    order = sorted(got, key=lambda k: -int(k.rsplit(".", 1)[1]) if k[-1].isdigit() else 0)
    assert b"".join(got[k] for k in order) == b"0123456789\n"


def test_backups_zero_truncates(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=6, backups=0)
    rf.write(b"abc\n")
    rf.write(b"defg\n")
    rf.close()
    assert files(path) == {"w.out": b"defg\n"}


def test_reopening_appends_and_counts_the_existing_size(tmp_path):
    path = str(tmp_path / "w.out")
    (tmp_path / "w.out").write_bytes(b"12345678\n")
    rf = RotatingFile(path, max_bytes=10, backups=1)
    assert rf.size == 9
    rf.write(b"ab\n")
    rf.close()
    assert files(path) == {"w.out": b"ab\n", "w.out.1": b"12345678\n"}


def test_labelled_stream_prefixes_every_line_once():
    inner = io.StringIO()
    s = LabelledStream(inner, "pool/w1")
    s.write("hello")
    s.write(" world\nsecond\nthi")
    s.write("rd\n")
    s.write("")
    print("via print", file=s)  # type: ignore[arg-type]
    assert inner.getvalue() == (
        "[pool/w1] hello world\n[pool/w1] second\n[pool/w1] third\n[pool/w1] via print\n"
    )
    assert s.getvalue  # other attributes reach the real stream


def test_follow_reads_across_rotations_even_two_between_looks(tmp_path):
    path = str(tmp_path / "w.out")
    rf = RotatingFile(path, max_bytes=10, backups=3)
    rf.write(b"1\n")
    gen = follow(path, offset=0, interval=0.001)
    assert next(gen) == b"1\n"
    rf.write(b"2\n")
    rf.write(b"33333333\n")  # rotation 1: w.out.1 = "1\n2\n"
    rf.write(b"44\n")  # rotation 2: w.out.2 = "1\n2\n", w.out.1 = "33333333\n"
    got = b""
    while len(got) < len(b"2\n33333333\n44\n"):
        got += next(gen)
    assert got == b"2\n33333333\n44\n"
    rf.write(b"5\n")
    assert next(gen) == b"5\n"
    gen.close()
    rf.close()


def test_last_lines(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(100000)))
    data, end = last_lines(str(path), 3)
    assert data == b"99997\n99998\n99999\n" and end == path.stat().st_size
    assert last_lines(str(path), 0)[0] == b""


def test_last_lines_read_on_into_the_rotated_files(tmp_path):
    """Right after a rotation the file holds fewer lines than asked: the rest come from
    ``.1``, ``.2`` (on main ``tail -n 5`` gave 3 lines then: test_tail_of_a_rotating_log)."""
    path = tmp_path / "f"
    (tmp_path / "f.2").write_bytes(b"".join(b"%d\n" % i for i in range(0, 10)))
    (tmp_path / "f.1").write_bytes(b"10\n11\n")
    path.write_bytes(b"12\n13\n14\n")
    data, end = last_lines(str(path), 5)
    assert data == b"10\n11\n12\n13\n14\n" and end == path.stat().st_size
    assert last_lines(str(path), 7)[0] == b"".join(b"%d\n" % i for i in range(8, 15))
    assert last_lines(str(path), 100)[0] == b"".join(b"%d\n" % i for i in range(0, 15))
    assert last_lines(str(path), 2)[0] == b"13\n14\n"
    path.write_bytes(b"")  # rotated a moment ago: nothing in the file yet
    assert last_lines(str(path), 3) == (b"9\n10\n11\n", 0)


def test_last_lines_never_give_a_line_twice_across_a_rotation(tmp_path, monkeypatch):
    """A rotation between reading the file and its ``.1`` (the file itself becomes ``.1``):
    read again, no line twice."""
    import supervisor._client as client

    path = tmp_path / "f"
    (tmp_path / "f.1").write_bytes(b"1\n2\n")
    path.write_bytes(b"3\n")
    real = client._read_back
    rotated = []

    def read_back(f, pos, data, count):
        out = real(f, pos, data, count)
        if not rotated:  # after the first read of the file: rotate it
            rotated.append(True)
            os.replace(tmp_path / "f.1", tmp_path / "f.2")
            os.replace(path, tmp_path / "f.1")
            path.write_bytes(b"4\n")
        return out

    monkeypatch.setattr(client, "_read_back", read_back)
    assert last_lines(str(path), 4)[0] == b"1\n2\n3\n4\n"
