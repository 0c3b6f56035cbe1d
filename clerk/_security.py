"""The cluster cookie and the CURVE keys derived from it.

Like Erlang, a cluster shares a secret *cookie*; unlike Erlang, the cookie never travels. Each
node derives one CURVE key pair from it (BLAKE2b of the cookie -> a Curve25519 secret key; the
public key follows from it). Every socket uses that pair: the ROUTER mailbox as a CURVE server,
DEALER and REQ sockets as CURVE clients that expect the same public key from the server. A ZAP
handler on the node's own loop admits only clients presenting the cluster's public key, so:

* a peer without the cookie cannot complete the handshake (it does not know the server key,
  and could not prove the client key if it did): it gets no reply and learns nothing;
* all traffic is encrypted and authenticated by ZeroMQ itself.

Where the cookie comes from, first match wins: ``--cookie-file``/``cookie_file``, the
``CLERK_COOKIE`` environment variable, ``~/.clerk/cookie`` (created with a random value and mode
0600 on first use). A cookie file that group or others may read is refused.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from clerk._errors import ConfigError

__all__ = ["MIN_COOKIE_BYTES", "CurveKeys", "default_cookie_path", "keys_from_cookie",
           "load_cookie"]

#: Shortest cookie accepted. The cookie is the cluster's only secret and the CURVE keys are
#: derived from it without a slow KDF, so a short one could be guessed offline from one
#: captured handshake; 16 bytes of text is the least that is not a password-sized guess (the
#: cookie created on first use has 43).
MIN_COOKIE_BYTES = 16


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """The cluster's CURVE key pair (Z85 text), the same on every node holding the cookie."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"CurveKeys(public={self.public!r})"


def default_cookie_path() -> Path:
    return Path.home() / ".clerk" / "cookie"


def keys_from_cookie(cookie: bytes) -> CurveKeys:
    # ZeroMQ is imported here, not at the top: the node's root process checks the cookie
    # (load_cookie) but never opens a socket, and pyzmq would cost it ~2.5 MiB.
    import zmq
    from zmq.utils import z85

    raw = hashlib.blake2b(cookie, digest_size=32, person=b"clerk-curve-v1").digest()
    secret = z85.encode(raw)
    return CurveKeys(public=zmq.curve_public(secret), secret=secret)


def _read_cookie_file(path: Path, key: str) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError("", key, str(path), "cookie file not found") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("", key, str(path),
                          f"cookie file is readable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
    cookie = path.read_bytes().strip()
    if not cookie:
        raise ConfigError("", key, str(path), "cookie file is empty")
    return _check_length(cookie, key, str(path))


def _check_length(cookie: bytes, key: str, shown: str) -> bytes:
    if len(cookie) < MIN_COOKIE_BYTES:
        raise ConfigError("", key, shown,
                          f"cookie is {len(cookie)} bytes, under the {MIN_COOKIE_BYTES}-byte "
                          "minimum (make one with: python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')")
    return cookie


def load_cookie(cookie_file: str | None, env: dict[str, str] | None = None) -> bytes:
    """The cluster cookie, from the file, ``CLERK_COOKIE``, or ``~/.clerk/cookie``."""
    environ = os.environ if env is None else env
    if cookie_file:
        return _read_cookie_file(Path(cookie_file).expanduser(), "cookie_file")
    value = environ.get("CLERK_COOKIE", "")
    if value.strip():
        return _check_length(value.strip().encode(), "CLERK_COOKIE", "(environment)")
    path = default_cookie_path()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another node created it at the same moment
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
    return _read_cookie_file(path, "cookie_file (default ~/.clerk/cookie)")
