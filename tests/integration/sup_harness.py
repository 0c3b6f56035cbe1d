"""Test harness for supervisor integration tests: builds supervisors that are always
stopped at teardown, records their events, and reads the children's log file."""

from __future__ import annotations

import os
import threading

import psutil

from supervisor import ChildSpec, Event, Supervisor
from supervisor.testing import wait_until
from tests.integration import sup_children
from tests.integration.sup_children import read_log


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Harness:
    def __init__(self, tmp_path: os.PathLike[str]) -> None:
        self.log = os.path.join(os.fspath(tmp_path), "children.log")
        self.sups: list[Supervisor] = []
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def sup(self, children, **kwargs) -> Supervisor:
        kwargs.setdefault("on_event", self._record)
        kwargs.setdefault("intensity", 10)
        sup = Supervisor(children, **kwargs)
        self.sups.append(sup)
        return sup

    def spec(self, cid: str, fn=sup_children.worker, *extra, **kwargs) -> ChildSpec:
        return ChildSpec(id=cid, start=fn, args=(self.log, cid, *extra), **kwargs)

    def lines(self, event: str | None = None, cid: str | None = None):
        return [
            line
            for line in read_log(self.log)
            if (event is None or line[0] == event) and (cid is None or line[1] == cid)
        ]

    def wait_started(self, cid: str, count: int = 1, timeout: float = 10) -> list[int]:
        """Wait until ``cid`` logged ``count`` starts; return all its pids in order."""
        wait_until(
            lambda: len(self.lines("start", cid)) >= count,
            timeout,
            message=lambda: f"{cid} started {count}x; log: {read_log(self.log)}",
        )
        return [pid for _, _, pid in self.lines("start", cid)]

    def settled(self, sup: Supervisor, timeout: float = 10) -> dict[str, int | None]:
        """Wait until every running worker of ``sup`` has logged its start (a process is
        started before its Python code runs); return the pids by id."""

        def check() -> dict[str, int | None] | None:
            children = sup.which_children()
            logged = {pid for _, _, pid in self.lines("start")}
            if all(c.pid in logged for c in children if c.pid and c.type == "worker"):
                return {c.id: c.pid for c in children}
            return None

        pids = wait_until(check, timeout, message=lambda: f"log: {read_log(self.log)}")
        assert pids is not None
        return pids

    def pids(self, sup: Supervisor) -> dict[str, int | None]:
        return {c.id: c.pid for c in sup.which_children()}

    def exits(self, cid: str) -> list[str]:
        with self._lock:
            return [e.reason.kind for e in self.events
                    if e.kind == "exit" and e.child_id == cid and e.reason is not None]

    def kinds(self) -> list[tuple[str, str | None]]:
        with self._lock:
            return [(e.kind, e.child_id) for e in self.events]

    def close(self) -> None:
        for sup in self.sups:
            sup.stop()
