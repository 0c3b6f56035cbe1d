"""supervisord's package (same import name) installed over this one is refused at import."""

import os

if os.path.exists(os.path.join(os.path.dirname(__file__), "supervisord.py")):
    raise ImportError(
        f"supervisord's 'supervisor' package is installed in the same directory as Clerk's "
        f"({os.path.dirname(__file__)}): they share the import name 'supervisor'. Run them from "
        "separate virtual environments (see the README, 'supervisor and supervisord').")
