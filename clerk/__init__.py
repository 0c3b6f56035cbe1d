"""Clerk: global periodic tasks across a cluster of Python nodes (being implemented)."""

__all__: list[str] = []
