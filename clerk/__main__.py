"""`python -m clerk` / the `clerk` console script (commands arrive with the node runtime)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clerk`` command."""
    print("clerk: no commands yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
