"""Logs of a node: every record reaches the process that started the node, through its logging.

Rules:

* A node's agent and its task workers are child processes. None of them writes log lines of
  its own (no ``basicConfig``): each sends every record, the task's own included, to the
  process that started the node, which passes it to *its* ``logging``. There the host's
  handlers, levels and formats apply, under the record's own logger name (``clerk.*``,
  ``supervisor``, ``py.warnings``, the task's ``myapp.tasks``...).
* Every forwarded record carries ``node`` (the node's name) and ``task``, ``slot``, ``run``
  (the run in progress in that process; None outside a run) as attributes, so a host's
  formatter may use ``%(task)s`` or a JSON formatter may pick them up.
* The channel is a Unix datagram socket in a 0700 temporary directory owned by the host
  (:class:`LogSink`): one record per datagram, JSON, no pickle. Logging never blocks the
  agent's loop (or a task): a record is turned into JSON fields and queued, and a sender thread
  does the sending. A record that cannot be delivered (the host is gone, or stalled for
  :data:`SEND_TIMEOUT_S`; the queue is full) is written to the child's stderr instead, never
  lost silently. Records still queued when the process exits normally are sent first.
* A level is filtered twice: a child sends only records at the node's ``log_level`` or above;
  the host then applies its own loggers' levels (``logging.getLogger("clerk").setLevel(...)``).
* Without a sink (``clerk.node_spec`` in someone else's tree), a child writes readable lines
  to its stderr itself, the format of ``python -m clerk.node``.
* Timestamps carry their zone: ISO 8601 in UTC with a ``Z``.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import queue
import shutil
import socket
import sys
import threading
import time
import traceback
from typing import Any

from clerk._sockdir import socket_dir

__all__ = [
    "CONTEXT_ATTRS",
    "ContextFilter",
    "ForwardHandler",
    "JsonFormatter",
    "LogSink",
    "TextFormatter",
    "configure_child_logging",
    "configure_host_logging",
    "run_context",
]

#: The attributes every forwarded record carries (None when they do not apply).
CONTEXT_ATTRS = ("node", "task", "slot", "run")
#: Largest datagram sent: under the 64 KiB that any Linux accepts for a Unix datagram. A longer
#: record is cut (its message first, keeping the head and the tail of a traceback).
MAX_RECORD_BYTES = 60_000
#: How long the sender thread waits for room in the host's socket before writing the record to
#: the child's stderr instead. Linux queues only ``net.unix.max_dgram_qlen`` (often 10)
#: datagrams per socket, so a burst waits for the host's thread; a second is far longer than a
#: busy host needs, and short enough that a host that stopped reading does not hold records up.
SEND_TIMEOUT_S = 1.0
#: Records queued for the sender thread at most; past it they go to stderr at once.
QUEUE_RECORDS = 10_000
#: How long an exiting process waits for its queued records to be sent; what is left then goes
#: to its stderr. (A host handles a few thousand records a second: 5 s covers a deep queue.)
FLUSH_AT_EXIT_S = 5.0
#: How long closing a sink waits for records still in its socket to be handled.
DRAIN_S = 0.5
#: A closing sink stops once its socket has been empty this long: records already sent are
#: queued in the socket, so a short quiet spell means nothing more is on its way.
DRAIN_QUIET_S = 0.1
#: How many ERROR records' messages a sink keeps (``LogSink.errors``).
ERRORS_KEPT = 5

_context: dict[str, Any] = {"task": None, "slot": None, "run": None}


def run_context(task: str | None = None, slot: int | None = None, run: str | None = None) -> None:
    """Set (or, with no arguments, clear) the run in progress in this process."""
    context = _context  # (three stores: a worker sets and clears it on every run)
    context["task"] = task
    context["slot"] = slot
    context["run"] = run


class ContextFilter(logging.Filter):
    """Adds ``node``, ``task``, ``slot``, ``run`` to every record that lacks them."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "node", None) is None:
            record.node = self.node
        for key in ("task", "slot", "run"):
            if not hasattr(record, key):
                setattr(record, key, _context[key])
        return True


def iso_time(created: float) -> str:
    """``2026-12-02T02:05:58.123Z``: UTC, with its zone."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int((created % 1) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``python -m clerk.node``'s readable lines: time (UTC, Z), node, logger, level, message,
    and ``[task=... slot=... run=...]`` on a task's own records."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{iso_time(record.created)} {getattr(record, 'node', None) or '-'} "
                f"{record.name} {record.levelname} {record.getMessage()}")
        task = getattr(record, "task", None)
        if task is not None and not record.name.startswith("clerk."):
            line += (f" [task={task} slot={getattr(record, 'slot', None)} "
                     f"run={getattr(record, 'run', None)}]")
        extra = _exception_text(self, record)
        return f"{line}\n{extra}" if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``node``, ``task``,
    ``slot``, ``run``, ``pid``, and ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": iso_time(record.created), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        for key in CONTEXT_ATTRS:
            out[key] = _plain(getattr(record, key, None))
        out["pid"] = record.process
        extra = _exception_text(self, record)
        if extra:
            out["exc"] = extra
        return json.dumps(out, ensure_ascii=False)


def _exception_text(fmt: logging.Formatter, record: logging.LogRecord) -> str:
    text = record.exc_text or ""
    if record.exc_info and not text:
        text = fmt.formatException(record.exc_info)
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


# --- the child side ---------------------------------------------------------------------------

#: LogRecord attributes that are not sent (recomputed or meaningless in another process).
_SKIP = frozenset({"args", "exc_info", "msg", "message", "asctime"})


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as JSON-safe fields, its message already formatted (args may not be JSON)."""
    fields = {k: _plain(v) for k, v in record.__dict__.items() if k not in _SKIP}
    fields["msg"] = record.getMessage()
    if record.exc_info and not record.exc_text:
        fields["exc_text"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return fields


def _encode(fields: dict[str, Any]) -> bytes:
    data = json.dumps(fields, ensure_ascii=False).encode()
    if len(data) <= MAX_RECORD_BYTES:
        return data
    budget = MAX_RECORD_BYTES // 3
    for key in ("msg", "exc_text", "stack_info"):
        text = fields.get(key)
        if isinstance(text, str) and len(text) > budget:
            fields[key] = f"{text[:budget // 2]}\n... ({len(text)} chars, cut) ...\n" \
                          f"{text[-budget // 2:]}"
    return json.dumps(fields, ensure_ascii=True).encode()[:MAX_RECORD_BYTES]


class ForwardHandler(logging.Handler):
    """Queues each record for the host's :class:`LogSink`; a sender thread sends it (falls
    back to ``fallback``, the child's stderr). ``emit`` never blocks."""

    def __init__(self, endpoint: str, fallback: logging.Handler) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.fallback = fallback
        self.undelivered = 0
        self._queue: queue.Queue[tuple[logging.LogRecord, dict[str, Any]] | None] = (
            queue.Queue(QUEUE_RECORDS))
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(SEND_TIMEOUT_S)
        self._sender = threading.Thread(target=self._send_loop, name="clerk log sender",
                                        daemon=True)
        self._sender.start()
        atexit.register(self.flush_and_stop)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = record_fields(record)  # now: the message and the context as they are
        except Exception:  # a record we cannot format: say so rather than lose it
            self.handleError(record)
            return
        try:
            self._queue.put_nowait((record, fields))
        except queue.Full:
            self._fall_back(record)

    def _fall_back(self, record: logging.LogRecord) -> None:
        self.undelivered += 1
        self.fallback.handle(record)

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            record, fields = item
            try:
                self._sock.sendto(_encode(fields), self.endpoint)
            except (OSError, TypeError, ValueError):  # host gone or stalled; or not JSON
                self._fall_back(record)

    def flush_and_stop(self) -> None:
        """Send what is queued (for up to FLUSH_AT_EXIT_S), stop the sender, and write what
        is still queued then to stderr."""
        if self._sender.is_alive():
            try:
                self._queue.put(None, timeout=FLUSH_AT_EXIT_S)
                self._sender.join(FLUSH_AT_EXIT_S)
            except queue.Full:
                pass
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._fall_back(item[0])

    def close(self) -> None:
        self.flush_and_stop()
        self._sock.close()
        super().close()


def _stderr_handler(fmt: str, node: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter(node))
    return handler


def _level(name: str) -> int:
    return logging.getLevelNamesMapping().get(name.upper(), logging.INFO)


def configure_child_logging(node: str, level: str, log_to: str | None) -> None:
    """Logging of an agent or worker process: everything to the host's sink (or stderr)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    fallback = _stderr_handler("text", node)
    handler: logging.Handler = fallback
    if log_to:
        handler = ForwardHandler(log_to, fallback)
        handler.addFilter(ContextFilter(node))
    root.addHandler(handler)
    root.setLevel(_level(level))
    logging.captureWarnings(True)  # a task's warnings become records too (py.warnings)


def configure_host_logging(node: str, level: str, fmt: str = "text") -> None:
    """``python -m clerk.node``'s own logging: readable (or JSON) lines on stderr."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(_stderr_handler(fmt, node))
    root.setLevel(_level(level))
    logging.captureWarnings(True)


# --- the host side ----------------------------------------------------------------------------


def dispatch(fields: dict[str, Any]) -> None:
    """Hand a forwarded record to this process's logging, under its own logger name."""
    record = logging.makeLogRecord(fields)
    for key in CONTEXT_ATTRS:
        if not hasattr(record, key):
            setattr(record, key, None)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class LogSink:
    """The host's end: a Unix datagram socket and a thread passing records to ``logging``.

    ``endpoint`` is what the node's children are given. ``close()`` handles what is still in
    the socket, then removes it. ``errors`` keeps the messages of the last ``ERRORS_KEPT``
    records at ERROR or above, whatever the host's logging does with them: what
    ``clerk.Node.start()`` quotes when the node ends before it answers."""

    def __init__(self) -> None:
        # (with the directories that killed hosts left: clerk._sockdir)
        self._dir, self.endpoint = socket_dir("clerk-log-", "log", socket.SOCK_DGRAM)
        self.received = 0
        self.bad = 0
        self.errors: collections.deque[str] = collections.deque(maxlen=ERRORS_KEPT)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.endpoint)
        # Room for bursts (a node starting, a flood of warnings) before senders time out.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clerk log sink", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # Blocks until a record comes (an idle node's host process is not woken 10 times a
        # second to look at _closing); close() wakes it with an empty datagram, and from
        # then on it drains until the socket has been quiet for DRAIN_QUIET_S.
        while True:
            try:
                data = self._sock.recv(MAX_RECORD_BYTES + 1024)
            except TimeoutError:
                return  # closing, and nothing more came
            except OSError:
                return
            if not data and self._closing.is_set():
                self._sock.settimeout(DRAIN_QUIET_S)
                continue
            try:
                fields = json.loads(data)
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.bad += 1
                continue
            self.received += 1
            level = fields.get("levelno")
            if isinstance(level, int) and level >= logging.ERROR:
                self.errors.append(str(fields.get("msg", "")))
            try:
                dispatch(fields)
            except Exception:  # a host handler's failure must not end the sink
                self.bad += 1

    def close(self) -> None:
        """Handle what is left (for up to DRAIN_S), stop the thread, remove the socket."""
        self._closing.set()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                waker.settimeout(DRAIN_S)  # a full queue: the thread is reading it
                waker.sendto(b"", self.endpoint)
        except OSError:  # the thread has already ended
            pass
        self._thread.join(timeout=DRAIN_S + 0.5)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)
