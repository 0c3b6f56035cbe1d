"""Node configuration: flags, TOML, defaults; every error names where it came from.

A TOML file has a ``[node]`` table with the same keys as the command-line flags (flags win) and
``[[task]]`` entries (see :mod:`clerk._tasks`)::

    [node]
    name = "a@127.0.0.1"        # required: name@host; host is where the mailbox binds
    port = 7400                 # mailbox port
    join = ["127.0.0.1:7402"]   # seeds (host:port), tried until one answers
    priority = 0                # election rank: higher (priority, name) wins
    cookie_file = "~/.clerk/cookie"
    insecure = false            # true turns CURVE off (never the default)
    workers = 2                 # task worker processes on this node
    log_level = "info"
    data_dir = "/var/lib/clerk/a"  # durable task table; default $XDG_STATE_HOME/clerk/<name>;
                                # false: none (state then lives only in the members' memory)
    metrics_port = 9400         # serve Prometheus metrics at http://HOST:9400/metrics
    voters = ["a@10.0.0.5", "b@10.0.0.6", "c@10.0.0.7"]  # quorum mode (the same list on every
                                # node; 1, 3, 5 or 7 names); absent or []: the default mode
    dispatch_lead = 20          # ms: as manager, send each run this far ahead of its due time
                                # (the node starts it at the due time); 0 = at the due time
    rejoin_timeout = 5000       # ms: restarted from a data directory that recorded other
                                # members, wait this long for them before running alone;
                                # 0 = off (run alone after 0.5 s, as a fresh node)

Voters (quorum mode, see clerk._quorum): each a valid node name, no duplicates, 1 to 7 of them
(an even count is accepted with a warning: 4 voters tolerate one failure, like 3). A node that
is one of the voters keeps its promises in ``<data_dir>/voter.json``, so it needs a data
directory: ``data_dir = false`` on a voter is an error naming both keys.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tomllib  # (Python >= 3.11: requires-python)
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clerk._errors import ConfigError, unknown_key
from clerk._lead import DISPATCH_LEAD_MS, MAX_DISPATCH_LEAD_MS

__all__ = ["DEFAULT_PORT", "MAX_REJOIN_TIMEOUT_MS", "MAX_VOTERS", "NODE_KEYS", "REJOIN_TIMEOUT_MS",
           "NodeConfig", "check_voter_data_dir", "load_config",
           "parse_address", "resolve_host", "validate_name", "validate_voters"]

log = logging.getLogger("clerk.config")

DEFAULT_PORT = 7400
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}@[A-Za-z0-9_.\-]{1,253}$")
_LOG_LEVELS = ("debug", "info", "warning", "error")
#: The keys of the ``[node]`` table.
NODE_KEYS = ("name", "port", "join", "priority", "cookie_file", "insecure", "workers",
             "log_level", "data_dir", "metrics_port", "voters", "dispatch_lead",
             "rejoin_timeout")
#: Seven voters tolerate three failures; more only adds fsyncs and round trips to every
#: commit (a write waits for a majority), and the voter set is fixed, not scaled.
MAX_VOTERS = 7
#: A restarted node's wait for the members its data directory recorded (ms; clerk._timings).
REJOIN_TIMEOUT_MS = 5000
#: At most an hour: a wait beyond that is a node that never runs alone.
MAX_REJOIN_TIMEOUT_MS = 3_600_000


def resolve_host(host: str) -> str:
    """The IPv4 address to bind/connect for ``host`` (a name or an address)."""
    return socket.gethostbyname(host)


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything a node needs to start. Build it with :func:`load_config` or directly."""

    name: str
    port: int = DEFAULT_PORT
    join: tuple[str, ...] = ()
    priority: int = 0
    cookie_file: str | None = None
    insecure: bool = False
    workers: int = 2
    log_level: str = "info"
    #: The data directory (a path), None for the default (:attr:`data_path`), False for none.
    data_dir: str | bool | None = None
    metrics_port: int | None = None  # Prometheus /metrics on the node's host (clerk._metrics)
    #: Quorum mode: the voters' names, the same on every node; empty: the default mode.
    voters: tuple[str, ...] = ()
    #: As manager, send runs this many ms ahead of their due time (clerk._lead); 0: at it.
    dispatch_lead: int = DISPATCH_LEAD_MS
    #: ms a node restarted from a data directory waits for the members it recorded before
    #: it runs alone (clerk._joining, "Restarts"); 0: it does not wait.
    rejoin_timeout: int = REJOIN_TIMEOUT_MS
    tasks: tuple[Any, ...] = field(default=())  # TaskDef objects (clerk._tasks)
    source: str = ""  # where it came from, for messages
    #: Where the agent and the workers send their log records (a :class:`clerk._logging.LogSink`
    #: of the process that started the node); None: they write to their stderr themselves.
    log_to: str | None = None

    @property
    def host(self) -> str:
        return self.name.split("@", 1)[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_voter(self) -> bool:
        return self.name in self.voters

    @property
    def data_path(self) -> Path | None:
        """Where the durable task table lives: ``data_dir``, or ``$XDG_STATE_HOME/clerk/<name>``
        (``~/.local/state/clerk/<name>``) by default; None if turned off."""
        if self.data_dir is False:
            return None
        if isinstance(self.data_dir, str):
            return Path(self.data_dir)
        from clerk._store import default_data_dir  # local: the store imports config errors

        return default_data_dir(self.name)

    def with_tasks(self, tasks: tuple[Any, ...]) -> NodeConfig:
        return replace(self, tasks=tasks)


def validate_name(name: object, source: str = "", key: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(source, key, name,
                          "must be name@host (letters, digits, '_', '.', '-'), e.g. a@10.0.0.5")
    return name


def parse_address(value: object, source: str = "", key: str = "join") -> str:
    """Validate ``host:port`` (or bare ``host``, meaning the default port)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, value, "must be a string host:port")
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(DEFAULT_PORT)
    if not host or not re.fullmatch(r"[A-Za-z0-9_.\-]+", host):
        raise ConfigError(source, key, value, "must be host:port, e.g. 10.0.0.5:7400")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(source, key, value, "port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


def validate_voters(value: object, source: str = "", key: str = "voters",
                    warn: bool = True) -> tuple[str, ...]:
    """The voter list (see the module docstring): a tuple of distinct node names, 0 to
    ``MAX_VOTERS`` long (empty: the default mode). An even count logs a warning."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(source, key, value, 'must be a list of node names (name@host), e.g. '
                                              '["a@10.0.0.5", "b@10.0.0.6", "c@10.0.0.7"]')
    names = tuple(validate_name(v, source, f"{key}[{i}]") for i, v in enumerate(value))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(source, key, list(value), f"lists {name} twice")
        seen.add(name)
    if len(names) > MAX_VOTERS:
        raise ConfigError(source, key, list(value),
                          f"has {len(names)} voters: 1 to {MAX_VOTERS} (1, 3, 5 or 7)")
    if names and len(names) % 2 == 0 and warn:
        log.warning("%s: %s: %d voters tolerate no more failures than %d (a majority is %d): "
                    "an odd count (1, 3, 5, 7) is the usual choice", source or "command line",
                    key, len(names), len(names) - 1, len(names) // 2 + 1)
    return names


def check_voter_data_dir(config: NodeConfig, where: str = "") -> None:
    """A voter keeps its promises on disk: ``voters`` naming this node with ``data_dir =
    false`` is a ConfigError naming both keys."""
    if config.is_voter and config.data_dir is False:
        raise ConfigError(where or config.source or "command line", "data_dir", False,
                          f"is false (or --no-data-dir), but voters lists this node "
                          f"({config.name}): a voter keeps its promises in its data directory "
                          "(voter.json); give it one, or remove it from voters")


def _check_int(source: str, key: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ConfigError(source, key, value, f"must be an integer from {lo} to {hi}")
    return value


def _node_values(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate a ``[node]`` table (or the flags) into NodeConfig keyword arguments."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key == "name":
            out[key] = validate_name(value, source, key)
        elif key in ("port", "metrics_port"):
            out[key] = _check_int(source, key, value, 1, 65535)
        elif key == "priority":
            out[key] = _check_int(source, key, value, -(2**31), 2**31 - 1)
        elif key == "workers":
            out[key] = _check_int(source, key, value, 1, 64)
        elif key == "dispatch_lead":
            out[key] = _check_int(source, key, value, 0, MAX_DISPATCH_LEAD_MS)
        elif key == "rejoin_timeout":
            out[key] = _check_int(source, key, value, 0, MAX_REJOIN_TIMEOUT_MS)
        elif key == "join":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple):
                raise ConfigError(source, key, value, "must be a list of host:port strings")
            out[key] = tuple(parse_address(v, source, f"{key}[{i}]") for i, v in enumerate(value))
        elif key == "cookie_file":
            if not isinstance(value, str) or not value:
                raise ConfigError(source, key, value, "must be a file path")
            out[key] = str(Path(value).expanduser())
        elif key == "insecure":
            if type(value) is not bool:
                raise ConfigError(source, key, value, "must be true or false")
            out[key] = value
        elif key == "log_level":
            if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
                raise ConfigError(source, key, value, f"must be one of {', '.join(_LOG_LEVELS)}")
            out[key] = value.lower()
        elif key == "data_dir":
            if value is False:
                out[key] = False
            elif isinstance(value, str | os.PathLike) and str(value):
                out[key] = str(Path(value).expanduser().absolute())
            else:
                raise ConfigError(source, key, value, "must be a directory path, or false for "
                                                      "no data directory")
        elif key == "voters":
            out[key] = validate_voters(value, source, key)
        else:
            raise ConfigError(source, key, value, unknown_key(key, NODE_KEYS))
    return out


def load_config(path: str | None, flags: Mapping[str, Any]) -> NodeConfig:
    """Merge ``path`` (TOML, optional) and ``flags`` (non-None values win) into a config.

    Tasks are loaded (imported and validated) here too, so a bad task stops the node before it
    starts, with an error naming the task and the field.
    """
    from clerk._tasks import load_task_entries  # local: tasks import config helpers

    values: dict[str, Any] = {}
    task_entries: list[Any] = []
    source = ""
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(source, "config", path, "file not found") from None
        except OSError as exc:
            raise ConfigError(source, "config", path, f"cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, "config", path, f"not valid TOML: {exc}") from None
        for key in doc:
            if key not in ("node", "task"):
                raise ConfigError(source, key, doc[key], "unknown table (known: [node], [[task]])")
        node = doc.get("node", {})
        if not isinstance(node, dict):
            raise ConfigError(source, "node", node, "must be a table [node]")
        values.update(_node_values({k: v for k, v in node.items()}, source))
        task_entries = doc.get("task", [])
        if not isinstance(task_entries, list):
            raise ConfigError(source, "task", task_entries, "must be an array of tables [[task]]")
    values.update(_node_values(flags, "command line"))
    if "name" not in values:
        raise ConfigError(source or "command line", "name", None,
                          "is required (--name a@host or name in [node])")
    tasks = load_task_entries(task_entries, source)
    config = NodeConfig(**values, tasks=tasks, source=source)
    check_voter_data_dir(config, source or "command line")
    return config
