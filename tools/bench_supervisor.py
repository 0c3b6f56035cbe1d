#!/usr/bin/env python3
"""Restart latency of our ``supervisor`` against supervisord, side by side in one run.

What is measured: the time from a child's SIGKILL to its replacement running. Every supervised
child, on start, writes its pid and a CLOCK_MONOTONIC stamp (system-wide on Linux) to a FIFO
that this script reads; the script kills the current child with SIGKILL, notes the time just
before the kill, and waits for the report of a new pid. Latency = new child's stamp - kill time.

Child kinds (the same programs for both supervisors):

* ``python``: ``python tools/_bench_child.py FIFO``, a command child. Includes interpreter
  start-up (tens of ms), which both supervisors pay alike.
* ``sh``: ``/bin/sh -c 'echo $$ > FIFO; exec sleep ...'``. Its own start-up is ~1 ms, so this
  row shows what the supervisor itself adds. ``sh`` cannot read CLOCK_MONOTONIC, so for this
  kind the stamp is the time this script received the report (it waits on the FIFO in
  ``select``, so that is within tens of microseconds).
* ``callable``: ours only, ``ChildSpec(start="_bench_child:main")``, a Python callable run in a
  fresh process: what Clerk uses for its workers. Its ratio is taken against supervisord's
  ``python`` row, the nearest thing supervisord can run.

Noise: every supervisor/child pair runs for the whole benchmark; crashes are taken in blocks
(``--block``, 20 by default) that rotate over the pairs, so a noisy moment of this 2-core
machine hits all of them alike. Before each kill the script waits a random 20-50 ms so that no
periodic timer of a supervisor stays in phase with the kills. Medians are the headline.
Before each kill the script also checks (untimed) that the reported pid is the one the
supervisor thinks it runs (``which_children()`` for ours, the parent pid for supervisord).

For ours a second table splits a restart, from the times its ``on_event`` hook fires: kill ->
exit noticed and reaped -> replacement spawned -> replacement running (its start-up).

Expect ~1 s from supervisord whatever the child: it notices the exit at once (the child's
output pipes close) but spawns the replacement only at the next turn of its main loop, which
sleeps in ``poll`` with a 1 s timeout (``runforever`` in its ``supervisord.py``).

supervisord's package is also named ``supervisor``: it is installed by this script into a venv
of its own (``--supervisord-venv``, by default under ``~/.cache/clerk-bench``) and run as a
separate program, never imported here.

Usage::

    .venv/bin/python tools/bench_supervisor.py               # 200 crashes per row
    .venv/bin/python tools/bench_supervisor.py --crashes 20  # a quick check
    .venv/bin/python tools/bench_supervisor.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TOOLS = Path(__file__).resolve().parent
CHILD = TOOLS / "_bench_child.py"
SUPERVISORD_VERSION = "4.3.0"
KINDS = ("python", "sh", "callable")
SLEEP_FOREVER = "2147483647"
REPORT_TIMEOUT = 15.0  # s: a replacement that takes longer than this is a failure, not a sample

log = logging.getLogger("bench_supervisor")


# --------------------------------------------------------------------------- reports


class Channel:
    """A FIFO on which children report ``"<pid> [<monotonic ns>]"`` lines.

    Opened read-write so it never sees EOF between children and a child's open-for-write never
    blocks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._buf = b""

    def close(self) -> None:
        os.close(self.fd)

    def drain(self) -> list[tuple[int, int]]:
        """Return the reports that are already waiting, without blocking."""
        return self._read(0.0)

    def wait(self, not_pid: int | None, timeout: float) -> tuple[int, int]:
        """Wait for a report from a pid other than ``not_pid``: return (pid, stamp ns)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no child reported on {self.path} within {timeout:.0f}s")
            for pid, stamp in self._read(left):
                if pid != not_pid:
                    return pid, stamp
                log.warning("stale report from killed pid %d ignored", pid)

    def _read(self, timeout: float) -> list[tuple[int, int]]:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        received = time.monotonic_ns()
        try:
            self._buf += os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            # A child that cannot stamp (sh) is stamped with the time we received its report.
            out.append((int(fields[0]), int(fields[1]) if len(fields) > 1 else received))
        return out


# --------------------------------------------------------------------------- targets


def child_command(kind: str, fifo: Path) -> list[str]:
    """The argv of a ``kind`` child that reports on ``fifo`` (same for both supervisors)."""
    if kind == "python":
        return [sys.executable, str(CHILD), str(fifo)]
    if kind == "sh":
        script = f"echo $$ > {shlex.quote(str(fifo))}; exec sleep {SLEEP_FOREVER}"
        return ["/bin/sh", "-c", script]
    raise ValueError(f"kind {kind!r} has no command form")


class Target(Protocol):
    """One supervisor supervising one child, that the bench kills over and over."""

    name: str
    kind: str
    channel: Channel

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def check(self, pid: int) -> str | None:
        """Say what is wrong if ``pid`` is not the child this supervisor thinks it runs."""

    def events(self) -> dict[tuple[str, int], int]:
        """Monotonic ns of the supervisor's own ``(event, pid)`` notices, where it tells."""


class SupervisordTarget:
    """supervisord (run as its own program from its own venv) supervising one child."""

    name = "supervisord"

    def __init__(self, supervisord: Path, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.exe = supervisord
        self.dir = workdir / f"supervisord-{kind}"
        self.dir.mkdir()
        self.channel = Channel(self.dir / "fifo")
        self.conf = self.dir / "supervisord.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._descendants: list[int] = []

    def _config(self) -> str:
        def q(path: Path) -> str:  # config values are %-interpolated by supervisord
            return str(path).replace("%", "%%")

        command = " ".join(shlex.quote(a) for a in child_command(self.kind, self.channel.path))
        return f"""\
[unix_http_server]
file={q(self.dir / "supervisor.sock")}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
nodaemon=true
logfile={q(self.dir / "supervisord.log")}
pidfile={q(self.dir / "supervisord.pid")}
childlogdir={q(self.dir)}
loglevel=info

[program:c]
command={command.replace("%", "%%")}
autostart=true
autorestart=true
startsecs=0
startretries=1000000
stopsignal=KILL
stdout_logfile={q(self.dir / "c.out")}
stderr_logfile={q(self.dir / "c.err")}
"""

    def start(self) -> None:
        self.conf.write_text(self._config())
        with open(self.dir / "supervisord.stdout", "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.exe), "-n", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=supervisord_env(),
                start_new_session=True,
            )

    def check(self, pid: int) -> str | None:
        import psutil

        assert self.proc is not None
        try:
            ppid = psutil.Process(pid).ppid()
        except psutil.NoSuchProcess:
            return f"child {pid} is gone"
        return None if ppid == self.proc.pid else f"child {pid} has parent {ppid}"

    def events(self) -> dict[tuple[str, int], int]:
        return {}

    def stop(self) -> None:
        if self.proc is None:
            return
        import psutil

        try:
            # supervisord puts each child in a process group of its own: note them before
            # supervisord goes, to kill any that outlive it.
            self._descendants = [
                p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)
            ]
        except psutil.NoSuchProcess:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_pids(self._descendants)
        self.proc = None


class OursTarget:
    """Our ``supervisor.Supervisor`` (in this process) supervising one child."""

    name = "ours"

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.dir = workdir / f"ours-{kind}"
        self.dir.mkdir()
        self.channel = Channel(self.dir / "fifo")
        self.sup: Any = None
        self._events: dict[tuple[str, int], int] = {}

    def _on_event(self, event: Any) -> None:
        # Called in the supervisor's loop thread: "exit" once it has reaped the killed child,
        # "restart" once the replacement's process exists (spawn returned).
        if event.pid is not None:
            self._events[(event.kind, event.pid)] = time.monotonic_ns()

    def events(self) -> dict[tuple[str, int], int]:
        return self._events

    def start(self) -> None:
        from supervisor import ChildSpec, Supervisor

        if self.kind == "callable":
            spec = ChildSpec(
                id="c",
                start="_bench_child:main",
                args=(str(self.channel.path),),
                restart="permanent",
                shutdown="brutal_kill",
            )
        else:
            spec = ChildSpec(
                id="c",
                command=child_command(self.kind, self.channel.path),
                restart="permanent",
                shutdown="brutal_kill",
            )
        # intensity is raised so that the benchmark's crashes never exhaust it.
        kw: dict[str, Any] = dict(strategy="one_for_one", intensity=100_000, period=1)
        try:
            self.sup = Supervisor(children=[spec], on_event=self._on_event, **kw)
        except TypeError:  # no on_event hook: no breakdown, same measurement
            self.sup = Supervisor(children=[spec], **kw)
        self.sup.start()

    def check(self, pid: int) -> str | None:
        # The child may report before the supervisor has recorded its pid: allow a moment.
        deadline = time.monotonic() + 1.0
        while True:
            infos = [c for c in self.sup.which_children() if c.id == "c"]
            if infos and infos[0].pid == pid and infos[0].status == "running":
                return None
            if time.monotonic() > deadline:
                return f"which_children() says {infos}, the child reported pid {pid}"
            time.sleep(0.001)

    def stop(self) -> None:
        if self.sup is not None:
            self.sup.stop()
            self.sup = None


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    target: Target
    samples_ms: list[float] = field(default_factory=list)
    trials: list[tuple[int, int, int, int]] = field(default_factory=list)  # old, new, kill, up
    pid: int | None = None
    pids: set[int] = field(default_factory=set)
    error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> tuple[str, str]:
        return (self.target.name, self.target.kind)


def crash_once(row: Row, rng: random.Random, record: bool = True) -> None:
    """Kill the current child of ``row`` and return the ms until its replacement reported."""
    ch = row.target.channel
    assert row.pid is not None
    # Outside the timed part: is the reported child the one the supervisor thinks it runs?
    if problem := row.target.check(row.pid):
        log.warning("%s/%s: %s", *row.label, problem)
        row.problems.append(problem)
    time.sleep(rng.uniform(0.020, 0.050))
    for pid, _ in ch.drain():  # a report here means a restart we did not cause
        log.warning("%s/%s: unexpected report from pid %d", *row.label, pid)
        row.pid = pid
    old = row.pid
    killed_at = time.monotonic_ns()
    os.kill(old, signal.SIGKILL)
    new, stamp = ch.wait(not_pid=old, timeout=REPORT_TIMEOUT)
    row.pid = new
    row.pids.add(new)
    if record:
        row.samples_ms.append((stamp - killed_at) / 1e6)
        row.trials.append((old, new, killed_at, stamp))


def run(rows: list[Row], crashes: int, block: int, warmup: int, rng: random.Random) -> None:
    for row in rows:
        try:
            row.pid, _ = row.target.channel.wait(not_pid=None, timeout=REPORT_TIMEOUT)
            row.pids.add(row.pid)
            for _ in range(warmup):  # first restarts pay one-off costs (imports, page cache)
                crash_once(row, rng, record=False)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"
            log.error("%s/%s failed: %s", *row.label, row.error)
    done = 0
    while done < crashes:
        n = min(block, crashes - done)
        order = rows[:]
        rng.shuffle(order)
        for row in order:
            if row.error:
                continue
            try:
                for _ in range(n):
                    crash_once(row, rng)
            except Exception as exc:  # keep measuring the others; report this one
                row.error = f"{type(exc).__name__}: {exc}"
                log.error("%s/%s failed: %s", *row.label, row.error)
        done += n
        print(f"  {done}/{crashes} crashes per row", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up


def default_venv_dir(version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "clerk-bench" / f"supervisord-{version}-{py}"


def supervisord_env() -> dict[str, str]:
    """Our environment without what would make supervisord's Python import our packages.

    Both are named ``supervisor``: a PYTHONPATH that reaches ours (or tools/, which we add for
    the callable child) must not reach supervisord.
    """
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def ensure_supervisord(venv: Path, version: str) -> Path:
    """Return the path of ``supervisord`` ``version``, installing it into ``venv`` if needed."""
    exe = venv / "bin" / "supervisord"
    env = supervisord_env()
    if exe.exists():
        have = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env)
        if have.stdout.strip() == version:
            return exe
    print(f"installing supervisor=={version} into {venv}", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"supervisor=={version}"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"could not install supervisord: {shlex.join(cmd)} failed")
    return exe


def kill_pids(pids: list[int] | set[int]) -> None:
    """SIGKILL those of ``pids`` that are still our children's programs (no pid-reuse victims)."""
    import psutil

    for pid in pids:
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if "_bench_child" in cmd or SLEEP_FOREVER in cmd or "supervisord" in cmd:
                proc.kill()
        except psutil.Error:
            pass


@contextmanager
def started(targets: list[Target]) -> Iterator[None]:
    """Start every target; stop them all (and kill whatever they leave) however we leave."""
    with ExitStack() as stack:
        for t in targets:
            stack.callback(t.channel.close)
        for t in reversed(targets):
            stack.callback(t.stop)
        for t in targets:
            t.start()
        yield


# --------------------------------------------------------------------------- report


def summary(row: Row) -> dict[str, Any]:
    s = sorted(row.samples_ms)
    out: dict[str, Any] = {"supervisor": row.target.name, "child": row.target.kind, "n": len(s)}
    if s:
        p99 = statistics.quantiles(s, n=100, method="inclusive")[98] if len(s) > 1 else s[0]
        out.update(median_ms=statistics.median(s), p99_ms=p99, min_ms=s[0], max_ms=s[-1])
    if row.error:
        out["error"] = row.error
    if row.problems:
        out["pid_mismatches"] = len(row.problems)
        out["first_mismatch"] = row.problems[0]
    return out


def breakdown(row: Row) -> dict[str, float] | None:
    """Medians (ms) of where a restart's time goes, from the supervisor's own event times:
    kill -> exit noticed and reaped; -> replacement spawned; -> replacement running."""
    ev = row.target.events()
    parts: dict[str, list[float]] = {"reap": [], "spawn": [], "boot": []}
    for old, new, killed, up in row.trials:
        exited, restarted = ev.get(("exit", old)), ev.get(("restart", new))
        if exited is None or restarted is None:
            continue
        parts["reap"].append((exited - killed) / 1e6)
        parts["spawn"].append((restarted - exited) / 1e6)
        parts["boot"].append((up - restarted) / 1e6)
    if not parts["reap"]:
        return None
    return {k: statistics.median(v) for k, v in parts.items()}


def ratio_base(kind: str) -> str:
    """The supervisord row an ours row is compared with."""
    return "python" if kind == "callable" else kind


def table(summaries: list[dict[str, Any]]) -> str:
    med = {(s["supervisor"], s["child"]): s.get("median_ms") for s in summaries}
    lines = [
        "| supervisor | child | n | median ms | p99 ms | max ms | supervisord/ours (median) |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        ratio = ""
        if s["supervisor"] == "ours" and s.get("median_ms"):
            base = med.get(("supervisord", ratio_base(s["child"])))
            if base:
                ratio = f"{base / s['median_ms']:.1f}x"
                if s["child"] == "callable":
                    ratio += " (vs supervisord python)"

        def f(key: str, s: dict[str, Any] = s) -> str:
            return f"{s[key]:.2f}" if key in s else "-"

        child = s["child"] + (" (FAILED)" if "error" in s else "")
        lines.append(
            f"| {s['supervisor']} | {child} | {s['n']} | {f('median_ms')} | {f('p99_ms')} "
            f"| {f('max_ms')} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crashes", type=int, default=200, help="crashes per row (default 200)")
    ap.add_argument("--block", type=int, default=20, help="crashes in a row per pair (20)")
    ap.add_argument("--warmup", type=int, default=3, help="unrecorded crashes per pair first")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"child kinds ({','.join(KINDS)})")
    ap.add_argument("--only", choices=("ours", "supervisord"), help="run one supervisor only")
    ap.add_argument("--supervisord-version", default=SUPERVISORD_VERSION)
    ap.add_argument("--supervisord-venv", type=Path, help="default: under ~/.cache/clerk-bench")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="also write summary and samples ('-': stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(kinds) - set(KINDS):
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")

    def interrupted(signum: int, _frame: object) -> None:
        # Unwind through the finally blocks: supervisord runs in a session of its own and
        # would outlive us.
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    sd_exe = None
    if args.only != "ours":
        venv = args.supervisord_venv or default_venv_dir(args.supervisord_version)
        sd_exe = ensure_supervisord(venv, args.supervisord_version)
    # Our callable child is imported by name in a fresh process: make tools/ importable there.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TOOLS), os.environ.get("PYTHONPATH", "")) if p
    )
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))

    workdir = Path(tempfile.mkdtemp(prefix="bench-sup-"))
    # Our supervisor logs every start/exit/restart; send that to a file at INFO, as supervisord
    # does by default with its own log, so both pay for logging.
    ours_log = logging.FileHandler(workdir / "ours.log")
    ours_log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    sup_logger = logging.getLogger("supervisor")
    sup_logger.addHandler(ours_log)
    sup_logger.setLevel(logging.INFO)
    sup_logger.propagate = False

    targets: list[Target] = []
    for kind in kinds:
        if args.only != "supervisord":
            targets.append(OursTarget(kind, workdir))
        if sd_exe is not None and kind != "callable":
            targets.append(SupervisordTarget(sd_exe, kind, workdir))
    rows = [Row(t) for t in targets]
    rng = random.Random(args.seed)

    print(
        f"restart latency, SIGKILL -> replacement running; {args.crashes} crashes per row, "
        f"blocks of {args.block}; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"supervisord {args.supervisord_version if sd_exe else '-'}; "
        f"load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
        flush=True,
    )
    try:
        with started(targets):
            run(rows, args.crashes, args.block, args.warmup, rng)
    finally:
        kill_pids({p for r in rows for p in r.pids})
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summaries = [summary(r) for r in rows]
    print(table(summaries))
    splits = [(r, b) for r in rows if (b := breakdown(r))]
    if splits:
        print(
            "\nwhere ours spends a restart (medians, ms; from its on_event hook):\n"
            "| child | kill -> exit reaped | -> replacement spawned | -> child running |\n"
            "|---|--:|--:|--:|"
        )
        for r, b in splits:
            print(f"| {r.target.kind} | {b['reap']:.2f} | {b['spawn']:.2f} | {b['boot']:.2f} |")
    if args.json:
        data = {
            "crashes": args.crashes,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "supervisord_version": args.supervisord_version if sd_exe else None,
            "rows": [
                {**summary(r), "breakdown_ms": breakdown(r), "samples_ms": r.samples_ms}
                for r in rows
            ],
        }
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}); everything started was stopped", file=sys.stderr)
        sys.exit(130)
