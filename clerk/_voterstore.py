"""A voter's durable register: ``<data_dir>/voter.json`` (quorum mode, see clerk._quorum).

Rules:

* **What it holds.** The record the core hands over in a ``VoterWrite`` effect: the highest
  ballot this voter promised and the rows it accepted (``{"version": 1, "promised": ...,
  "rows": {...}}``), opaque here, wrapped as ``{"format": "clerk-voter/1", "node": <name>,
  "record": ...}``. It is the voter's half of every promise it made: a promise or an accept
  whose record is not on disk was never made.
* **Durable before it is answered.** ``write(record, then)`` hands the record to one writer
  thread, which writes a temp file in the same directory, ``fsync``s it, renames it over
  ``voter.json`` and ``fsync``s the directory. Only then is ``then`` called, and never from the
  thread: the thread queues it and wakes the node's loop (``wake``), which runs every finished
  callback in order with :meth:`VoterStore.deliver`. A crash at any point leaves the old record
  or the new one, never a mix, and a callback (a PROMISE or ACCEPTED send) never runs for a
  record that is not on disk.
* **In order, coalesced.** Records are written in the order they were handed over; while one
  write is in progress, the records handed over meanwhile wait, and only the newest of them is
  written (each record is the whole register, so it contains what the older ones said); then
  their callbacks run in order. A slow disk thus costs one fsync pair per burst, not per
  message.
* **A failed write answers nothing.** If a write fails (disk full, I/O error, a record over
  ``MAX_RECORD_BYTES``), the error is logged and the callbacks waiting on it are dropped: the
  voter stays silent (the candidate retries or times out), which costs liveness, never safety.
* **Never a silent fresh start.** :meth:`load` returns the record, or None when there is no
  file (a voter's first start). A file that cannot be read, is not JSON, is not ours or was
  written by another node raises :class:`~clerk.ConfigError` naming the file: starting fresh
  would forget promises and let a lower ballot win a majority through this voter. The
  operator decides (restore it; or remove it knowing that the voter's promises go with it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from clerk._durable import replace_durably
from clerk._errors import ConfigError
from clerk._finitejson import not_finite_of

__all__ = ["FORMAT", "MAX_RECORD_BYTES", "VOTER_FILE", "VoterStore"]

log = logging.getLogger("clerk.store")

FORMAT = "clerk-voter/1"
VOTER_FILE = "voter.json"
#: The register holds one row per task, each with the task's record (state included, at most
#: the task table's own bound): the same 8 MiB as the task table (clerk._store.MAX_FILE_BYTES).
MAX_RECORD_BYTES = 8 * 1024 * 1024
#: Write times kept for :attr:`VoterStore.latencies` (status, metrics, the benchmark).
LATENCY_SAMPLES = 256

Callback = Callable[[], None]


class VoterStore:
    """``voter.json`` in ``path`` for node ``node`` (see the module docstring).

    ``wake``: called from the writer thread after a write, so that the node's loop wakes up and
    calls :meth:`deliver` (the agent writes a byte to its wake-up socket). Without it, the
    owner polls :meth:`deliver` itself.
    """

    def __init__(self, path: Path | str, node: str, *,
                 wake: Callable[[], None] | None = None, source: str = "") -> None:
        self.path = Path(path)
        self.node = node
        self.file = self.path / VOTER_FILE
        self.source = source
        self._wake = wake
        self._cond = threading.Condition()
        self._queue: list[tuple[bytes, Callback]] = []  # handed over, not yet being written
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._done: deque[Callback] = deque()  # durable: to run on the loop, in order
        #: Writes done (each one a file write + two fsyncs), and failed.
        self.writes = 0
        self.failures = 0
        #: Seconds per write (temp file, fsync, rename, fsync of the directory), newest last.
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    # --- start ----------------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        """The record on disk, or None if there is none yet. ConfigError if it is unusable."""
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse(f"cannot be read: {exc.strerror}")
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._refuse(f"is not valid JSON ({exc})")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            self._refuse(f"is not a Clerk voter file (format {FORMAT!r})")
        if doc.get("node") != self.node:
            self._refuse(f"was written by node {doc.get('node')!r}, not {self.node!r}")
        record = doc.get("record")
        if not isinstance(record, dict):
            self._refuse("holds no record")
        bad = not_finite_of(record)
        if bad:  # (json.loads reads NaN, Infinity, 1e400; no write of ours has one; a row's
            # task record holding one is kept by the register, and its next write fails)
            self._refuse(f"holds {len(bad)} number{'' if len(bad) == 1 else 's'} that "
                         f"{'is' if len(bad) == 1 else 'are'} not finite (record: "
                         f"{'; '.join(bad[:3])})")
        return record

    def _refuse(self, problem: str) -> NoReturn:
        raise ConfigError(self.source or str(self.file), "voter file", self.file,
                          f"{problem}. It holds this voter's promises: starting without it "
                          "could let a stale manager win a majority. Restore it from a backup, "
                          "or, knowing that the promises are lost, move it away")

    # --- writing --------------------------------------------------------------------------------

    def write(self, record: dict[str, Any], then: Callback) -> bool:
        """Make ``record`` durable in the writer thread, then have :meth:`deliver` call
        ``then``. False (logged, ``then`` dropped) if the record cannot be serialized or is
        over ``MAX_RECORD_BYTES``."""
        try:
            text = json.dumps({"format": FORMAT, "node": self.node, "written": time.time(),
                               "record": record}, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return self._failed(f"record is not JSON: {exc}")
        data = text.encode()
        if len(data) > MAX_RECORD_BYTES:
            return self._failed(f"record of {len(data)} bytes is over the {MAX_RECORD_BYTES}"
                                "-byte limit")
        with self._cond:
            if self._closing:
                return False
            self._queue.append((data, then))
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="clerk-voter",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def _failed(self, why: str) -> bool:
        self.failures += 1
        log.error("cannot write %s: %s; this voter's answer is not sent", self.file, why)
        return False

    def deliver(self) -> int:
        """On the loop: run the callbacks of every record now durable, in order. Returns how
        many ran. A callback that raises is logged; the others still run."""
        ran = 0
        while True:
            try:
                then = self._done.popleft()
            except IndexError:
                return ran
            ran += 1
            try:
                then()
            except Exception:
                log.exception("error after a voter write")

    def pending(self) -> int:
        """Records handed over and not yet durable (or durable, callbacks not yet run)."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0) + len(self._done)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record handed over is written (or failed). False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                self._busy = True
            began = time.perf_counter()
            ok = False
            try:
                ok = self._write_file(batch[-1][0])  # the newest record holds the older ones
            finally:
                if ok:
                    self.latencies.append(time.perf_counter() - began)
                    self.writes += 1
                    self._done.extend(then for _, then in batch)
                else:
                    self.failures += 1
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if ok and self._wake is not None:
                try:
                    self._wake()
                except Exception:  # the loop is gone (closing): nothing to wake
                    pass

    def _write_file(self, data: bytes) -> bool:
        """Temp file, fsync, rename over ``voter.json``, fsync of the directory."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            replace_durably(self.file, data,
                            self.file.with_name(f".{VOTER_FILE}.{os.getpid()}.tmp"))
        except OSError as exc:
            log.error("cannot write %s: %s; the answers waiting on it are not sent",
                      self.file, exc.strerror)
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what was handed over, then stop the writer (callbacks not yet delivered are
        dropped: the node is going away)."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
