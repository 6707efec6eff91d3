"""Conditional requests (RFC 9110 §13.2.2), evaluated in the order the RFC prescribes.

Artifacts are content-addressed, so the validators are immutable: the strong ETag is the
quoted sha256 and needs no stat of the file.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

from django.utils.http import parse_etags, parse_http_date_safe


class Outcome(enum.Enum):
    """What the preconditions allow."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not-modified"  # 304
    FAILED = "failed"  # 412


def _strong_match(candidates: list[str], etag: str | None) -> bool:
    if etag is None or etag.startswith("W/"):
        return False
    return "*" in candidates or etag in candidates


def _weak_match(candidates: list[str], etag: str | None) -> bool:
    if etag is None:
        return False
    if "*" in candidates:
        return True
    opaque = etag.removeprefix("W/")
    return any(c.removeprefix("W/") == opaque for c in candidates)


def _modified_since(value: str, last_modified: datetime | None) -> bool:
    """True unless the header is a valid date at or after Last-Modified."""
    since = parse_http_date_safe(value)
    if since is None or last_modified is None:
        return True
    return int(last_modified.timestamp()) > since


def evaluate(
    method: str,
    headers: Mapping[str, str],
    etag: str | None,
    last_modified: datetime | None,
) -> Outcome:
    """Decide 200/304/412 for a GET or HEAD of a representation with these validators."""
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _strong_match(parse_etags(if_match), etag):
            return Outcome.FAILED
    else:
        if_unmodified = headers.get("If-Unmodified-Since")
        if if_unmodified is not None and last_modified is not None:
            since = parse_http_date_safe(if_unmodified)
            if since is not None and int(last_modified.timestamp()) > since:
                return Outcome.FAILED
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _weak_match(parse_etags(if_none_match), etag):
            return Outcome.NOT_MODIFIED if safe else Outcome.FAILED
        return Outcome.PROCEED
    if_modified = headers.get("If-Modified-Since")
    if safe and if_modified is not None and not _modified_since(if_modified, last_modified):
        return Outcome.NOT_MODIFIED
    return Outcome.PROCEED
