"""``supervisor tree.toml`` (or ``python -m supervisor tree.toml``): run a supervision tree
described in TOML; ``supervisor ctl ...`` steers a running one (see ``supervisor._ctl``).

Running a tree also opens its control socket (``--control PATH``, else ``control`` in the
file, else the default that the log names); SIGHUP reloads the file, SIGTERM/SIGINT stop
the tree in order.

Exit codes: 0 after an orderly stop (SIGTERM/SIGINT, or auto_shutdown), 1 if the
supervisor gave up (restart intensity), a child failed to start, or the control socket is
in use by another live tree; 2 for a bad file (every problem is listed).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from types import FrameType

from supervisor._config import ConfigError, read_tree
from supervisor._control import ControlInUse, ControlServer
from supervisor._protocol import default_control_path
from supervisor._supervisor import Supervisor
from supervisor._types import ReloadResult

log = logging.getLogger("supervisor")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        from supervisor._ctl import main as ctl_main

        return ctl_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="supervisor",
        description="Run an OTP-style supervision tree of OS processes described in TOML. "
        "'supervisor ctl --help' for steering a running tree.",
    )
    parser.add_argument("tree", help="the TOML file describing the tree")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the file (every command exists and is executable, every start "
        "target imports) and exit without running it; lists every problem",
    )
    parser.add_argument(
        "--control", metavar="PATH", help="the control socket (overrides control = ...)"
    )
    args = parser.parse_args(argv)
    try:
        tree = read_tree(args.tree, check=args.check)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.tree}: ok")
        return 0
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    sup = tree.supervisor

    def reload() -> ReloadResult:
        new = read_tree(args.tree, check=True)
        if new.control is not None and new.control != tree.control:
            log.warning("reload: a new control path takes effect at the next start")
        return sup.reload(new.supervisor)

    try:
        server = _open_control(args.control or tree.control, sup, reload)
    except ControlInUse as exc:
        print(f"error: control socket: {exc}", file=sys.stderr)
        return 1
    previous = signal.getsignal(signal.SIGHUP)

    def reload_and_log() -> None:
        try:
            log.info("SIGHUP: reloading the tree file: %s", reload())
        except ConfigError as exc:
            log.error("reload rejected, the tree is unchanged:\n%s", exc)
        except Exception as exc:  # e.g. the tree is stopping
            log.error("reload failed: %s", exc)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        if server is not None:
            server.request_reload()  # serialized with the ctl requests
        else:  # no control socket: reload from a thread (a signal handler must not block)
            threading.Thread(target=reload_and_log, name="supervisor-reload").start()

    signal.signal(signal.SIGHUP, on_hup)
    try:
        if server is not None:
            return sup._run(on_started=server.serve)
        return sup.run()
    finally:
        signal.signal(signal.SIGHUP, previous)
        if server is not None:
            server.close()


def _open_control(
    explicit: str | None, sup: Supervisor, reload: Callable[[], ReloadResult]
) -> ControlServer | None:
    """Bind the control socket. An explicit path in use is fatal (:class:`ControlInUse`);
    the default one in use (a second tree of the same user) only means this tree has no
    control socket, with a warning saying so."""
    if explicit is not None:
        path, origin = explicit, explicit
    else:
        path, origin = default_control_path()
        if "XDG_RUNTIME_DIR" not in os.environ:
            problem = _private_dir_problem(os.path.dirname(path))
            if problem is not None:
                log.error("control socket: %s; running without one", problem)
                return None
    try:
        server = ControlServer(sup, path, reload)
    except (ControlInUse, OSError) as exc:
        if explicit is not None:
            raise ControlInUse(str(exc)) from None
        log.warning("control socket %s: %s; running without one (set --control)", path, exc)
        return None
    log.info("control socket: %s", origin)
    return server


def _private_dir_problem(directory: str) -> str | None:
    """The /tmp fallback directory must be ours and closed to others (0700)."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return f"{directory} is not a directory of ours"
    if stat.S_IMODE(st.st_mode) & 0o077:
        return f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}, expected 0700"
    return None


def console() -> None:
    """The ``supervisor`` console script: like ``python -m supervisor``, ``start`` targets
    import from the current directory too."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    sys.exit(main())


if __name__ == "__main__":
    console()
