"""``supervisor ctl`` (``python -m supervisor ctl``): steer a running tree.

::

    supervisor ctl [--control PATH] status [--json]
    supervisor ctl start ID | stop ID | restart ID      # nested ids as pool/worker-1
    supervisor ctl tail ID [stdout|stderr] [-n N] [-f]
    supervisor ctl reload | stop-all

Exit codes, as systemctl and supervisorctl use them: 0 success; 1 the request failed
(unknown id, naming the known ones; a child that would not start; a reload rejected,
listing every problem; no supervisor on the socket, or a socket others could use);
2 bad usage; 3 ``status`` when some child is not running (the LSB status code).
Messages for failures go to stderr as ``Failed to <op> <id>: <why>``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from types import FrameType
from typing import Any

from supervisor._client import ControlClient, ControlError, follow, last_lines

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervisor ctl", description="Steer a running supervision tree."
    )
    parser.add_argument(
        "--control",
        metavar="PATH",
        help="the tree's control socket (default $XDG_RUNTIME_DIR/supervisor.sock, "
        "or /tmp/supervisor-<uid>/supervisor.sock when XDG_RUNTIME_DIR is unset)",
    )
    # Also accepted after the command (`ctl status --control PATH`), as operators type it.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--control", metavar="PATH", dest="control_after", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser(
        "status", parents=[after], help="the tree: every child's state, pid, uptime ..."
    )
    status.add_argument("--json", action="store_true", help="one JSON list of rows")
    for name, text in (
        ("start", "start a stopped child"),
        ("stop", "stop a child (honouring its shutdown); it stays stopped"),
        ("restart", "stop then start one child; its siblings keep running"),
    ):
        p = sub.add_parser(name, parents=[after], help=text)
        p.add_argument("id", help="child id; a nested child as pool/worker-1")
    tail = sub.add_parser(
        "tail", parents=[after], help="a child's output file (the last lines, or follow)"
    )
    tail.add_argument("id")
    tail.add_argument("stream", nargs="?", choices=["stdout", "stderr"], default="stdout")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    tail.add_argument("-n", "--lines", type=int, default=10, help="lines to show (default 10)")
    sub.add_parser("reload", parents=[after], help="re-read the tree file and apply the difference")
    sub.add_parser(
        "stop-all", parents=[after], help="stop every child, right to left (the supervisor stays)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `supervisor ctl status | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    client = ControlClient(args.control_after or args.control)
    command: str = args.command
    try:
        if command == "status":
            return _status(client, args.json)
        if command == "tail":
            return _tail(client, args.id, args.stream, args.lines, args.follow)
        if command == "reload":
            return _reload(client)
        if command == "stop-all":
            stopped = client.stop_all()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
            return EXIT_OK
        return _one(client, command, args.id)
    except ControlError as exc:
        target = f" {args.id}" if getattr(args, "id", None) else ""
        verb = {"status": "get status", "stop-all": "stop all"}.get(command, command)
        print(f"Failed to {verb}{target}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _one(client: ControlClient, command: str, child_id: str) -> int:
    result: dict[str, Any] = getattr(client, command)(child_id)
    if command == "start":
        state = "already running" if result["already"] else "started"
        print(f"{child_id}: {state} (pid {result['pid']})")
    elif command == "stop":
        print(f"{child_id}: {'already stopped' if result['already'] else 'stopped'}")
    else:
        print(f"{child_id}: restarted (pid {result['old_pid']} -> {result['pid']})")
    return EXIT_OK


def _reload(client: ControlClient) -> int:
    result = client.reload()
    parts = [
        f"{label} {', '.join(result[key])}"
        for key, label in (
            ("started", "started"),
            ("stopped", "stopped"),
            ("restarted", "restarted"),
            ("failed", "failed to start"),
        )
        if result[key]
    ]
    print(f"reloaded: {'; '.join(parts) or 'no change'}")
    return EXIT_FAILED if result["failed"] else EXIT_OK


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def _status(client: ControlClient, as_json: bool) -> int:
    rows = client.status()
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = [("ID", "TYPE", "RESTART", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT")]
        for r in rows:
            table.append(
                (
                    r["id"],
                    r["type"],
                    r["restart"],
                    "-" if r["pid"] is None else str(r["pid"]),
                    r["state"],
                    format_uptime(r["uptime"]),
                    str(r["restarts"]),
                    r["last_exit"] or "-",
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
        for row in table:
            cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]))
    return EXIT_OK if all(r["state"] == "running" for r in rows) else EXIT_NOT_RUNNING


def _tail(client: ControlClient, child_id: str, stream: str, lines: int, follow_: bool) -> int:
    path = client.child(child_id)[stream]
    if path is None:
        raise ControlError(
            "no_file",
            f"its {stream} goes to the supervisor's own output, not to a file "
            f'(set {stream} = "..." or logs = "dir" in the tree file)',
        )
    out = sys.stdout.buffer
    offset = 0
    try:
        data, offset = last_lines(path, lines)
        out.write(data)
    except FileNotFoundError:
        pass  # nothing written yet
    out.flush()
    if not follow_:
        return EXIT_OK
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for chunk in follow(path, offset=offset, stop=lambda: stopping):
            out.write(chunk)
            out.flush()
    except BrokenPipeError:  # `ctl tail -f x | head`
        pass
    return EXIT_OK
