"""Where a request path points inside the content URL space, decided without a database.

Paths arrive percent-encoded in the ASGI ``raw_path``; they are decoded strictly as UTF-8
here (servers differ in how they decode), repeated slashes are merged as nginx does by
default, and dot segments, control characters and overlong paths are refused with a 4xx.
Nothing below ever builds a filesystem path from the request: artifacts are found by
database lookup, so these checks keep answers clean rather than keeping files safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_PATH_LENGTH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SLASHES = re.compile(r"/{2,}")


class BadPath(Exception):
    """The path cannot name any content; ``status`` is the 4xx to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_path(raw: bytes) -> str:
    """Percent-decode a raw request path and refuse what no Pulp path can contain."""
    if len(raw) > MAX_PATH_LENGTH:
        raise BadPath(f"Request path is longer than {MAX_PATH_LENGTH} bytes.", status=414)
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("Request path is not valid UTF-8 after percent-decoding.") from None
    if _CONTROL.search(path):
        raise BadPath("Request path contains control characters.")
    path = _SLASHES.sub("/", path)
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadPath("Request path contains '.' or '..' segments.")
    return path


@dataclass(frozen=True)
class AddSlash:
    """The prefix or a domain without its trailing slash: answer 301 to ``location``."""

    location: str


@dataclass(frozen=True)
class Outside:
    """Not in the content URL space: 404."""


@dataclass(frozen=True)
class RootListing:
    """The listing of a domain's distributions (``domain`` is None without domains)."""

    domain: str | None


@dataclass(frozen=True)
class ContentPath:
    """A path below the prefix (and domain): base path plus relative path, still joined."""

    domain: str | None
    path: str


Target = AddSlash | Outside | RootListing | ContentPath


def locate(path: str, prefix: str, domain_enabled: bool) -> Target:
    """Split ``path`` into domain and content path under ``CONTENT_PATH_PREFIX``."""
    if not domain_enabled and path == prefix.rstrip("/"):
        return AddSlash(prefix)
    if not path.startswith(prefix):
        return Outside()
    rest = path[len(prefix) :]
    if not domain_enabled:
        return ContentPath(None, rest) if rest else RootListing(None)
    if not rest:
        return Outside()
    domain, slash, below = rest.partition("/")
    if not slash:
        return AddSlash(f"{prefix}{domain}/")
    return ContentPath(domain, below) if below else RootListing(domain)


def quote_location(path: str) -> str:
    """Percent-encode a decoded path for a Location header, leaving URL syntax alone."""
    from urllib.parse import quote

    return quote(path, safe="/:@!$&'()*+,;=~")
