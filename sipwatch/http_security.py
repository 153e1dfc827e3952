"""Securing the daemon's HTTP endpoint for `http_host = "0.0.0.0"`, in the style of the
Prometheus exporter-toolkit's web config: optional TLS (a certificate and key file) and
optional basic auth (a users file of `name:bcrypt-hash` lines, as `htpasswd -B` writes),
with the load balancers' paths (`/livez`, `/readyz`, `/active` by default) left open.

Owns: loading and checking those files (every problem is a ConfigError naming the key), the
aiohttp middleware that asks for credentials, and the TLS context. Passwords are never
logged, and a verified one is kept only as a SHA-256 digest, so that bcrypt (deliberately
slow) runs once per user and password, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import ssl
import stat
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from sipwatch.errors import ConfigError

log = logging.getLogger("sipwatch.http")
REALM = "sipwatch"
#: Verified credentials kept (digests only); more distinct pairs than this start afresh.
_CACHE_MAX = 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_users(path: str, key: str = "daemon.http_users_file") -> dict[str, bytes]:
    """`name:hash` per line (bcrypt hashes: $2a$, $2b$ or $2y$); blank lines and `#` comments
    are skipped. A file others may read is used, with a warning (as ssh warns of keys)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{key}: {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {p}: {getattr(exc, 'strerror', exc)}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("event=users_file_readable_by_others path=%s mode=%o", p, mode & 0o777)
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not name or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"{key}: {p} line {number}: expected name:bcrypt-hash")
        users[name] = hashed.encode()
    if not users:
        raise ConfigError(f"{key}: {p} holds no user")
    return users


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context (TLS 1.2+) from a PEM certificate chain and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"daemon.http_tls_cert_file/key_file: {exc.filename} does not exist"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"daemon.http_tls_cert_file/key_file: cannot load {cert_file} / {key_file}: {exc}"
        ) from None
    return context


@dataclass(slots=True)
class BasicAuth:
    """The middleware: every path outside `open_paths` needs a user of `users`."""

    users: Mapping[str, bytes]
    open_paths: Collection[str] = ("/livez", "/readyz", "/active")
    _verified: set[bytes] = field(default_factory=set)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self.open_paths or await self._allowed(request):
            return await handler(request)
        return web.Response(
            status=401,
            text="authentication required\n",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    async def _allowed(self, request: web.Request) -> bool:
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return False
        name, password = credentials
        hashed = self.users.get(name)
        if hashed is None:
            return False
        digest = hashlib.sha256(name.encode() + b"\0" + password + b"\0" + hashed).digest()
        if any(hmac.compare_digest(digest, seen) for seen in self._verified):
            return True
        ok = await asyncio.to_thread(_checkpw, password, hashed)
        if ok:
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified.add(digest)
        else:
            log.warning("event=http_auth_failed user=%r peer=%s", name, request.remote)
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a malformed hash in the users file
        return False


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    name, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return name.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
