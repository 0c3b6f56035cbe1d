import pytest

from supervisor.testing import WaitTimeout, wait_until


def test_wait_until_returns_value():
    calls = iter([0, 0, 5])
    assert wait_until(lambda: next(calls), timeout=1) == 5


def test_wait_until_times_out_with_message():
    with pytest.raises(WaitTimeout, match="never"):
        wait_until(lambda: False, timeout=0.05, message="never")


def test_a_failing_block_keeps_the_node_logs_and_says_where(tmp_path, monkeypatch) -> None:
    import pytest

    from clerk.testing import LocalCluster

    monkeypatch.setenv("CLERK_KEEP_LOGS", str(tmp_path / "kept"))
    with pytest.raises(AssertionError) as err:
        with LocalCluster(2, start=False) as cluster:
            for name in cluster.names:
                cluster.log_path(name).write_text(f"line one of {name}\nlast line of {name}\n")
            raise AssertionError("the test failed")
    assert not cluster.dir.exists()
    note = "\n".join(getattr(err.value, "__notes__", []))
    (kept,) = (tmp_path / "kept").iterdir()
    assert f"LocalCluster: node logs kept in {kept}" in note
    assert "last line of n2@127.0.0.1" in note
    assert (kept / "n1.log").read_text().startswith("line one of n1@127.0.0.1")


def test_a_passing_block_keeps_nothing(tmp_path, monkeypatch) -> None:
    from clerk.testing import LocalCluster

    monkeypatch.setenv("CLERK_KEEP_LOGS", str(tmp_path / "kept"))
    with LocalCluster(1, start=False) as cluster:
        cluster.log_path(cluster.names[0]).write_text("fine\n")
    assert not cluster.dir.exists() and not (tmp_path / "kept").exists()


def test_free_ports_are_reserved_outside_the_ephemeral_range_and_bounded(monkeypatch) -> None:
    import collections

    from clerk import _ports, testing
    from clerk._ports import ephemeral_range, lock_dir

    lo, hi = ephemeral_range()
    monkeypatch.setattr(_ports, "LOOSE_PORTS_KEPT", 4)
    monkeypatch.setattr(_ports, "_loose_order", collections.deque())  # this test's alone
    first = testing.free_ports(3)
    assert not [p for p in first if lo <= p <= hi]
    assert all((lock_dir() / f"{p}.lock").exists() for p in first)  # held: others skip them
    second = testing.free_ports(3)
    assert not set(first) & set(second)
    assert not (lock_dir() / f"{first[0]}.lock").exists()  # the oldest two were let go
    assert not (lock_dir() / f"{first[1]}.lock").exists()
    assert (lock_dir() / f"{first[2]}.lock").exists()
