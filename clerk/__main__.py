"""The ``clerk`` command: ``clerk node ...`` and ``clerk status ...``.

::

    clerk --help | --version

    python -m clerk status --join 127.0.0.1:7401          # a human table
    python -m clerk status --join 127.0.0.1:7401 --json   # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from clerk import _cli_ops
from clerk._client import request_status
from clerk._config import parse_address
from clerk._errors import ConfigError, NotReachableError
from clerk._security import keys_from_cookie, load_cookie
from clerk._version import __version__

__all__ = ["COMMANDS", "main", "render_status"]

#: The subcommands, as ``clerk --help`` lists them.
COMMANDS = {
    "node": "run a node in the foreground (the flags of python -m clerk.node)",
    "status": "show the cluster as a node sees it (--join HOST:PORT [--json] [TASK])",
    **_cli_ops.COMMANDS,
}
#: Width of an error text in the status table: its last line, shortened at a word boundary.
ERROR_WIDTH = 72


def _fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _fmt_next(t: dict[str, Any], now: float) -> str:
    """The next due time in the task's zone and in UTC: ``next 2026-03-29 03:00:00+02:00
    (Europe/Berlin) = 01:00:00 UTC, in 41.5s``."""
    try:
        when = datetime.fromisoformat(str(t.get("next_due")))
    except ValueError:
        return f"next due {t.get('next_due')}"
    utc = when.astimezone(UTC)
    spec = "milliseconds" if when.microsecond else "seconds"
    return (f"next {when.isoformat(' ', spec)} ({t.get('timezone') or 'UTC'}) = "
            f"{utc.replace(tzinfo=None).isoformat(' ', spec)} UTC, "
            f"in {max(0.0, utc.timestamp() - now):.1f}s")


def render_status(st: dict[str, Any]) -> str:
    """The human table for ``clerk status``."""
    lines = [f"cluster as seen by {st.get('node')} ({st.get('role')})",
             f"manager: {st.get('manager') or '(election in progress)'}   term: {st.get('term')}"
             f"   highest term seen: {st.get('highest_term')}"]
    lines += _quorum_lines(st.get("quorum"))
    lines += _clock_lines(st.get("clock"), st.get("member_clocks"))
    lines.append("")
    lines.append(f"{'MEMBER':<28} {'ADDRESS':<22} {'ALIVE':<6} {'PRIO':>4} {'RUNS':>6}  TASKS")
    for m in st.get("members", []):
        star = "*" if m.get("name") == st.get("manager") else " "
        lines.append(f"{star}{m.get('name', ''):<27} {m.get('address', ''):<22} "
                     f"{'yes' if m.get('alive') else 'no':<6} {m.get('priority', 0):>4} "
                     f"{m.get('runs', 0):>6}  {', '.join(m.get('tasks', []))}")
    tasks = st.get("tasks", [])
    if tasks:
        lines += ["", f"{'TASK':<30} {'EVERY':>14} {'OK':>6} {'ERR':>5} {'T/O':>5} "
                      f"{'SKIP':>5}  LAST RUN"]
        for t in tasks:
            runs = t.get("runs", {})
            last = t.get("last_run") or {}
            last_s = "-"
            if last:
                on = f" on {last['node']}" if last.get("node") else ""
                last_s = f"slot {last.get('slot')}{on}: {last.get('outcome')}"
                if last.get("node"):  # a skipped slot ran nowhere and took no time
                    last_s += f" in {_fmt_ms(last.get('duration_ms'))} ms"
                if last.get("error"):
                    last_s += f" ({_short_error(str(last['error']))})"
            if not t.get("enabled", True):
                last_s = "disabled"
            if t.get("paused"):
                last_s = f"PAUSED (through {t.get('paused_by')}); last: {last_s}"
            every = (f"{t['interval_ms']} ms" if t.get("interval_ms") else t.get("cron")) or "-"
            lines.append(f"{t.get('name', ''):<30} {every:>14} "
                         f"{runs.get('ok', 0):>6} {runs.get('error', 0):>5} "
                         f"{runs.get('timeout', 0):>5} {runs.get('skipped', 0):>5}  {last_s}")
            if t.get("next_due"):
                lines.append(f"{'':<30} {_fmt_next(t, time.time())}")
            if t.get("conflicts"):
                last_c = t.get("last_conflict") or {}
                lines.append(f"{'':<30} conflicts: {t['conflicts']} update(s) dropped "
                             f"(last: {last_c.get('dropped', '?')} of {last_c.get('lost', '?')}; "
                             f"kept {last_c.get('kept', '?')})")
            lines += _deploy_lines(t)
    if st.get("stale"):
        lines += ["", f"stale EXECUTEs dropped by this node (late, or from a deposed manager): "
                      f"{st['stale']}"]
    bad = st.get("bad_frames") or {}
    if bad:
        lines += ["", "dropped frames: " + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))]
    return "\n".join(lines)


def _clock_lines(c: Any, members: Any) -> list[str]:
    """A follower's clock against its manager's (clerk._clockskew), when it has an estimate;
    on the manager, its members' as they reported them."""
    if isinstance(members, dict) and members:
        return ["member clocks (ms from the manager's): " + ", ".join(
            f"{name} {ms:+.1f}" for name, ms in sorted(members.items())
            if isinstance(ms, (int, float)))]
    if not isinstance(c, dict):
        return []
    if not isinstance(c.get("offset_ms"), (int, float)):
        n = c.get("unestimated_runs")
        return ([f"clock: no estimate of the manager's; {n} runs judged by this node's own "
                 "clock without one"] if isinstance(n, int) and n > 0 else [])
    how = ("runs held and judged in the manager's time" if c.get("corrected")
           else "within the clocks' tolerance")
    return [f"clock: {c['offset_ms']:+.1f} ms from the manager's ({how})"]


def _quorum_lines(q: Any) -> list[str]:
    """The mode; in quorum mode the voters (reachable from this node or not) and the quorum:
    ``quorum: ok`` or ``quorum: lost (2 of 3 voters unreachable)``."""
    if not isinstance(q, dict) or q.get("mode") != "quorum":
        return ["mode: available (no voters)"]
    reachable = set(q.get("reachable") or [])
    state = str(q.get("quorum") or "unknown")
    if state != "ok" and q.get("detail"):
        state += f" ({q['detail']})"
    voters = ", ".join(f"{v} ({'reachable' if v in reachable else 'UNREACHABLE'})"
                       for v in q.get("voters") or [])
    return [f"mode: quorum   quorum: {state}", f"voters: {voters}"]


def _deploy_lines(t: dict[str, Any]) -> list[str]:
    """A rolling deploy, as status sees it: a stopped task, members that disagree."""
    out = []
    gone = t.get("gone_since")
    if gone:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(gone))
        out.append(f"{'':<30} stopped: no live member has it loaded since {since}")
    for v in t.get("definitions") or []:
        d = v.get("definition", {})
        mark = "chosen" if v.get("chosen") else "not used"
        every = f"cron {d['cron']!r}" if d.get("cron") else f"every {d.get('interval')} ms"
        out.append(f"{'':<30} members disagree: {every}, timeout "
                   f"{d.get('timeout')} ms on {', '.join(v.get('nodes', []))} ({mark})")
    if t.get("loaded_here") is False and not gone:
        out.append(f"{'':<30} not loaded on this node (scheduled for the members that have it)")
    return out


def _short_error(error: str) -> str:
    """The last line of an error text (where the exception is), cut at a word boundary."""
    lines = error.strip().splitlines() or [""]
    return textwrap.shorten(lines[-1], width=ERROR_WIDTH, placeholder=" ...")


def _status(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="clerk status",
                                description="Show the cluster as one of its nodes sees it.")
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="show this one task in detail, with its history")
    p.add_argument("--join", action="append", required=True, metavar="HOST:PORT",
                   help="a node to ask (repeatable: the first that answers is used)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--cookie-file", metavar="PATH")
    p.add_argument("--insecure", action="store_true", help="talk to nodes running --insecure")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait per node")
    args = p.parse_args(argv)
    if args.task is not None:
        return _cli_ops.status_task(args)
    try:
        addresses = [parse_address(a, "command line", "--join") for a in args.join]
        keys = None if args.insecure else keys_from_cookie(load_cookie(args.cookie_file))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        st = request_status(addresses, keys=keys, timeout=args.timeout)
    except NotReachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else render_status(st))
    sys.stdout.flush()  # here, so that a closed pipe is noticed inside main (see there)
    return 0


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    return "\n".join([
        f"usage: clerk [-h] [--version] {{{','.join(COMMANDS)}}} ...", "",
        "Global periodic tasks across a cluster of Python nodes.", "", "commands:",
        *(f"  {c:<{width}}  {text}" for c, text in COMMANDS.items()), "",
        "options:", "  -h, --help  show this help and exit",
        "  --version   print the version and exit", "",
        "`clerk COMMAND --help` shows the flags of one command.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clerk`` console script and ``python -m clerk``."""
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`clerk status | head -n 0`): end quietly. Point stdout at
        # /dev/null so that the interpreter's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"clerk {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command == "status":
        return _status(rest)
    if command in _cli_ops.COMMANDS:
        return _cli_ops.main_ops(command, rest)
    if command == "node":
        from clerk.node import main as node_main

        return node_main(rest, prog="clerk node")
    print(f"error: unknown command {command!r} (expected {', '.join(COMMANDS)})",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
