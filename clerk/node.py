"""``python -m clerk.node``: run one Clerk node in the foreground.

::

    python -m clerk.node --name a@127.0.0.1 --port 7401 --join 127.0.0.1:7402 \\
                         --config clerk.toml --priority 0 --cookie-file PATH \\
                         --data-dir PATH   # or --no-data-dir
                         --voter a@10.0.0.5 --voter b@10.0.0.6 --voter c@10.0.0.7

Exit codes: 0 after a graceful leave (SIGTERM, SIGHUP -- the terminal closed -- or Ctrl-C;
a second Ctrl-C exits at once), 1 if the node stopped on its own (refused by the cluster,
or its agent kept crashing or losing its task workers, or could not start them at all), 2
for a configuration error (the message names the file or flag, the key and the value), a
temporary directory too long for its Unix sockets, or when the node cannot listen on its
port or take its data directory (the message names the address and, where it can tell, the
process holding it; not retried: it would fail the same way).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import psutil

from clerk._config import REJOIN_TIMEOUT_MS, NodeConfig, load_config
from clerk._errors import ConfigError
from clerk._lead import DISPATCH_LEAD_MS, MAX_DISPATCH_LEAD_MS
from clerk._logging import LogSink, configure_host_logging
from clerk._node import AGENT_SHUTDOWN_MS, ask_agent_to_leave, node_supervisor, preflight
from clerk._portholder import EXIT_CANNOT_LISTEN, EXIT_CANNOT_START
from supervisor import ShutdownReason, SupervisorError

__all__ = ["build_parser", "main"]

log = logging.getLogger("clerk.node")


def build_parser(prog: str = "python -m clerk.node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run a Clerk node in the foreground.")
    p.add_argument("--name", help="node name, name@host (host is where the mailbox binds)")
    p.add_argument("--port", type=int, help="mailbox port (default 7400)")
    p.add_argument("--join", action="append", metavar="HOST:PORT",
                   help="a seed node to join through (repeatable)")
    p.add_argument("--config", metavar="FILE", help="TOML file with [node] and [[task]] tables")
    p.add_argument("--priority", type=int, help="election priority (higher wins; default 0)")
    p.add_argument("--cookie-file", metavar="PATH",
                   help="cluster cookie (default: $CLERK_COOKIE, else ~/.clerk/cookie)")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="turn CURVE off: no encryption, no authentication (never the default)")
    p.add_argument("--workers", type=int, help="task worker processes (default 2)")
    p.add_argument("--log-level", type=str.lower, choices=["debug", "info", "warning", "error"],
                   help="debug, info, warning or error (any case)")
    p.add_argument("--log-format", choices=["text", "json"], default="text", type=str.lower,
                   help="text: readable lines (default); json: one JSON object per line "
                        "(ts, level, logger, message, node, task, slot, run, pid, exc)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data-dir", metavar="PATH",
                      help="durable task table (default $XDG_STATE_HOME/clerk/<name>, i.e. "
                           "~/.local/state/clerk/<name>)")
    data.add_argument("--no-data-dir", action="store_const", const=False, dest="data_dir",
                      help="keep no durable task table (states live only in memory)")
    p.add_argument("--dispatch-lead", type=int, metavar="MS",
                   help=f"as manager, send each run MS ms ahead of its due time; the node "
                        f"starts it at the due time (default {DISPATCH_LEAD_MS}; 0 = off; at "
                        f"most {MAX_DISPATCH_LEAD_MS})")
    p.add_argument("--rejoin-timeout", type=int, metavar="MS",
                   help=f"restarted from a data directory that recorded other members, wait "
                        f"MS ms for them before running alone (default {REJOIN_TIMEOUT_MS}; "
                        f"0 = off)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help='serve Prometheus metrics at http://HOST:PORT/metrics (needs '
                        'pip install "clerk-cluster[metrics]")')
    p.add_argument("--voter", action="append", metavar="NAME", dest="voters",
                   help="quorum mode: a voter's node name, name@host (repeat for each voter; "
                        "the same list on every node; 1, 3, 5 or 7 voters)")
    return p


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    flags = {"name": args.name, "port": args.port, "join": args.join,
             "priority": args.priority, "cookie_file": args.cookie_file,
             "insecure": args.insecure, "workers": args.workers, "log_level": args.log_level,
             "data_dir": args.data_dir, "metrics_port": args.metrics_port,
             "voters": args.voters,
             "dispatch_lead": args.dispatch_lead, "rejoin_timeout": args.rejoin_timeout}
    return load_config(args.config, flags)


def main(argv: Sequence[str] | None = None, prog: str = "python -m clerk.node") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        config = config_from_args(args)
        preflight(config, derive_keys=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_host_logging(config.name, config.log_level, args.log_format)
    # The agent's and the workers' records (the tasks' own included) come back here and are
    # written by this process's handler, in one format (see clerk._logging).
    try:
        sink = LogSink()
    except ConfigError as exc:  # its socket's path (clerk._sockdir: a long TMPDIR)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(dataclasses.replace(config, log_to=sink.endpoint))
    finally:
        sink.close()


def _run(config: NodeConfig) -> int:
    sup = node_supervisor(config)
    signals = threading.Event()
    count = [0]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        if count[0] >= 2:
            # Second Ctrl-C: exit at once, taking every process of this node with us.
            for child in psutil.Process().children(recursive=True):
                try:
                    child.kill()
                except psutil.Error:
                    pass
            os._exit(130)
        signals.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A closed terminal (or an ssh session that ends) sends SIGHUP: leave gracefully, with the
    # hand-over, rather than die with 129 and leave the cluster to notice a crash.
    signal.signal(signal.SIGHUP, on_signal)
    try:
        sup.start()
    except SupervisorError as exc:
        log.error("node could not start: %s", exc)
        return 1
    stopping = 0.0  # when the graceful leave started
    while True:
        try:
            info = sup.wait(timeout=0.2)
            break
        except TimeoutError:
            if signals.is_set() and not stopping:
                # The agent alone gets SIGTERM (sup.stop() would signal its task workers too,
                # killing runs in flight); it leaves and exits, and the supervisor follows.
                stopping = time.monotonic()
                if not ask_agent_to_leave(sup):
                    threading.Thread(target=sup.stop, daemon=True).start()
            elif stopping and time.monotonic() - stopping > AGENT_SHUTDOWN_MS / 1000 + 5:
                log.warning("the agent did not leave in time; stopping it")
                threading.Thread(target=sup.stop, daemon=True).start()
                stopping = float("inf")
        except SupervisorError as exc:
            log.error("node gave up: %s", exc)
            return 1
    if info.reason is ShutdownReason.AUTO_SHUTDOWN and not stopping:
        if info.exit is not None and info.exit.exitcode == EXIT_CANNOT_LISTEN:
            # Its port was taken after the pre-flight check, or its data directory:
            # the agent said which; starting it again would fail the same way.
            log.error("node could not start (see the log above)")
            return 2
        if info.exit is not None and info.exit.exitcode == EXIT_CANNOT_START:
            log.error("node could not start its agent or its task workers (see the log "
                      "above); not retried")
            return 1
        log.error("node stopped on its own (see the log above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
