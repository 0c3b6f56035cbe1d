"""``python -m supervisor tree.toml``: run a supervision tree described in TOML.

Exit codes: 0 after an orderly stop (SIGTERM/SIGINT, or auto_shutdown), 1 if the
supervisor gave up (restart intensity) or a child failed to start, 2 for a bad file.
"""

from __future__ import annotations

import argparse
import logging
import sys

from supervisor._config import ConfigError, load_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Run an OTP-style supervision tree of OS processes described in TOML.",
    )
    parser.add_argument("tree", help="the TOML file describing the tree")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the file and exit without running it"
    )
    args = parser.parse_args(argv)
    try:
        sup = load_tree(args.tree)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.tree}: ok")
        return 0
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
