"""The operator's subcommands of ``clerk``: pause, resume, run, history, and ``status TASK``.

::

    clerk pause TASK   --join HOST:PORT [--join ...] [--cookie-file PATH] [--insecure]
    clerk resume TASK  --join ...
    clerk run TASK     --join ...       # one extra run now; refused while a run is in flight
    clerk history TASK --join ... [--json]
    clerk status TASK  --join ... [--json]   # one task in detail, with its history

Any node will do: a follower names the manager and the command goes there. The command returns
once the manager has applied it and replicated the table. Exit codes: 0 done, 1 refused by the
cluster (unknown task, a run in flight) or no node answered, 2 a bad flag or cookie.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

from clerk._client import request_control
from clerk._config import parse_address
from clerk._errors import ConfigError, ControlError, NotReachableError
from clerk._security import keys_from_cookie, load_cookie

__all__ = ["COMMANDS", "main_ops", "render_history", "render_task", "status_task"]

#: The subcommands and their line in ``clerk --help``.
COMMANDS = {
    "pause": "pause a task cluster-wide until resumed (TASK --join HOST:PORT)",
    "resume": "resume a paused task on its grid (TASK --join HOST:PORT)",
    "run": "run a task once now; refused while it runs (TASK --join HOST:PORT)",
    "history": "a task's last runs (TASK --join HOST:PORT [--json])",
}
_OP = {"pause": "pause", "resume": "resume", "run": "trigger", "history": "show"}


def add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--join", action="append", required=True, metavar="HOST:PORT",
                   help="a node to ask (repeatable: the first that answers is used)")
    p.add_argument("--cookie-file", metavar="PATH")
    p.add_argument("--insecure", action="store_true", help="talk to nodes running --insecure")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to keep trying (e.g. during an election)")


def _when(ts: Any) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render_history(history: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'SLOT':>12} {'STARTED (UTC)':<23} {'LATE ms':>8} {'NODE':<24} {'DUR ms':>9} "
             f"{'OUTCOME':<8} {'VER':>5}  ERROR"]
    for h in history:
        late = "-" if h.get("due") is None else f"{(h['start'] - h['due']) * 1000:.1f}"
        slot = f"{h.get('slot')}{'*' if h.get('trigger') else ''}"
        lines.append(f"{slot:>12} {_when(h.get('start')):<23} {late:>8} "
                     f"{h.get('node') or '-':<24} {float(h.get('duration_ms', 0)):>9.1f} "
                     f"{h.get('outcome', ''):<8} {h.get('version', ''):>5}  {h.get('error', '')}")
    if any(h.get("trigger") for h in history):
        lines.append("(* triggered by an operator)")
    return "\n".join(lines)


def render_task(t: dict[str, Any]) -> str:
    runs = t.get("runs", {})
    lines = [f"task {t.get('name')}  ({t.get('target')})",
             f"  every {t.get('interval_ms') or '-'} ms, timeout {t.get('timeout_ms')} ms, "
             f"instant={t.get('instant')}, enabled={t.get('enabled')}",
             f"  args: {json.dumps(t.get('args'))}",
             f"  state: {t.get('state_bytes', 0)} bytes" + ("" if t.get("has_state")
                                                            else " (none yet)"),
             "  runs: " + ", ".join(f"{k}={v}" for k, v in sorted(runs.items()))]
    if t.get("paused"):
        lines.append(f"  PAUSED through {t.get('paused_by')} at {_when(t.get('paused_at'))}")
    if t.get("running"):
        r = t["running"]
        lines.append(f"  running: slot {r.get('slot')} on {r.get('node')} (run {r.get('run')})")
    if t.get("next_due"):
        lines.append(f"  next due: {t['next_due']}")
    lines += ["", render_history(t.get("history", []))]
    return "\n".join(lines)


def _connect(args: argparse.Namespace) -> tuple[list[str], Any] | None:
    try:
        addresses = [parse_address(a, "command line", "--join") for a in args.join]
        keys = None if args.insecure else keys_from_cookie(load_cookie(args.cookie_file))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return addresses, keys


def _request(args: argparse.Namespace, op: str) -> tuple[int, Any]:
    conn = _connect(args)
    if conn is None:
        return 2, None
    addresses, keys = conn
    try:
        return 0, request_control(addresses, op, args.task, keys=keys, timeout=args.timeout)
    except (ControlError, NotReachableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, None


def status_task(args: argparse.Namespace) -> int:
    """``clerk status TASK``: the hook called by ``clerk status`` when a task is named."""
    code, detail = _request(args, "show")
    if code == 0:
        print(json.dumps(detail, indent=2, sort_keys=True) if args.json else render_task(detail))
    return code


def main_ops(command: str, argv: Sequence[str]) -> int:
    """``clerk pause|resume|run|history TASK ...``."""
    p = argparse.ArgumentParser(prog=f"clerk {command}", description={
        "pause": "Pause a task cluster-wide until resumed (survives failover).",
        "resume": "Resume a paused task: it runs again from the next slot of its grid.",
        "run": "Run a task once now, on a random eligible node, with its current state. "
               "Refused (exit 1) while a run of the task is in flight.",
        "history": "Show a task's last runs.",
    }[command])
    p.add_argument("task", metavar="TASK", help="the task's name")
    add_client_flags(p)
    if command == "history":
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    code, result = _request(args, _OP[command])
    if code != 0:
        return code
    if command == "history":
        hist = result.get("history", [])
        print(json.dumps(hist, indent=2) if args.json else render_history(hist))
    elif command == "run":
        print(f"triggered {result['task']}: run {result['run']} (slot {result['slot']}) "
              f"on {result['node']}")
    else:
        print(f"{result['task']} {'paused' if result['paused'] else 'resumed'} "
              f"(through {result['node']} at {_when(result['at'])})")
    return 0
