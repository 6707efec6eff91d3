"""Byte ranges (RFC 9110 §14): which ranges of a representation a Range header selects.

The rules are nginx's (``ngx_http_range_filter_module``, checked against nginx 1.22 by
``tests/test_ranges_nginx_e2e.py``), so a Pulp behind nginx or serving files next to it
answers every Range header the way nginx answers it for a static file:

* a header that does not start with ``bytes=`` (another unit, ``bytes = 0-1``, an empty
  ``bytes=``) is ignored: 200 with the whole representation (RFC 9110 §14.2);
* a syntax error anywhere in the ranges (``bytes=abc``, ``bytes=-1-11``, ``bytes=0-1;``), a
  position beyond 2**63 - 1, or no satisfiable range at all (``bytes=5-1``, ``bytes=-0``,
  ``bytes=5000-`` of 1000 bytes) is 416 with ``Content-Range: bytes */<size>``: nginx rejects
  invalid range sets, as §14.2 permits, and pulpcore's functional tests expect 416 for
  ``bytes=-1-11``;
* ranges that select nothing are dropped from a set that has others (``bytes=1-2,5-1`` is
  ``1-2``);
* ranges that together ask for more bytes than there are (``bytes=0-9,0-9`` of 10 bytes;
  overlapping ranges, §15.5.17) are ignored: 200 with the whole representation;
* one range is a 206; several are a 206 ``multipart/byteranges`` (RFC 9110 §14.6), in the
  order asked, as nginx serves static files.

Byte positions are inclusive, as in the RFC.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.utils.http import parse_http_date_safe

#: The largest position nginx accepts (``NGX_MAX_OFF_T_VALUE``); more is a 416.
MAX_POSITION = 2**63 - 1
#: One range of the set, as nginx's parser reads it: spaces around the numbers and the
#: dash, ``first-``, ``first-last`` or ``-suffix``.
_RANGE = re.compile(r" *(?:([0-9]+) *- *([0-9]*)|-([0-9]+)) *")


class RangeNotSatisfiable(Exception):
    """The Range header is invalid or selects no byte of the representation (→ 416)."""


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable range, both ends inclusive and inside the representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int | str) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def _position(digits: str) -> int:
    """A position; more than nginx's off_t holds is an invalid range set."""
    if len(digits.lstrip("0")) > len(str(MAX_POSITION)) or int(digits) > MAX_POSITION:
        # Length first: Python refuses to convert integers of more than 4300 digits.
        raise RangeNotSatisfiable("range position beyond 2**63 - 1")
    return int(digits)


def _pin(first: str | None, last: str | None, suffix: str | None, size: int
         ) -> tuple[int, int]:
    """One range pinned to ``size`` bytes: its first and last position, which select
    nothing when the first is after the last."""
    if suffix is not None:
        return max(size - _position(suffix), 0), size - 1
    assert first is not None
    return _position(first), size - 1 if not last else min(_position(last), size - 1)


def _ignored(value: str) -> bool:
    """Not a byte-range set nginx acts on: another unit, or nothing after ``bytes=``."""
    return len(value) < 7 or value[:6].lower() != "bytes="


def select(value: str | None, size: int) -> list[ByteRange] | None:
    """The ranges of a ``size``-byte representation that ``value`` (a Range header) asks
    for: None for the whole representation (no header, or one to ignore), else one or more
    ranges in the order asked. Raises :class:`RangeNotSatisfiable` for a 416.
    """
    if value is None or _ignored(value):
        return None
    selected: list[ByteRange] = []
    for spec in value[6:].split(","):
        parsed = _RANGE.fullmatch(spec)
        if parsed is None:
            raise RangeNotSatisfiable(f"invalid Range header {value!r}")
        first, last, suffix = parsed.groups()
        start, end = _pin(first, last, suffix, size)
        if start <= end:
            selected.append(ByteRange(start, end))
        elif start == 0:
            # nginx: a range from byte 0 that selects nothing (the representation is
            # empty) means "send it all".
            return None
    if not selected:
        raise RangeNotSatisfiable(f"no satisfiable range in {value!r} of {size} bytes")
    if sum(r.length for r in selected) > size:
        return None  # more bytes than the representation has: overlapping ranges
    return selected


def unsatisfied_content_range(size: int | None) -> str:
    """The Content-Range of a 416 (RFC 9110 §15.5.17): ``bytes */<size>``."""
    return f"bytes */{'*' if size is None else size}"


def if_range_allows(value: str | None, etag: str | None, last_modified: datetime | None) -> bool:
    """Whether a range may be honoured under If-Range (RFC 9110 §13.1.5).

    An entity tag must match strongly (weak tags never do); a date must equal Last-Modified
    exactly. Anything else means "send the whole representation".
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and not value.startswith("W/") and value == etag
    parsed = parse_http_date_safe(value)
    if parsed is None or last_modified is None:
        return False
    return parsed == int(last_modified.timestamp())


#: The Content-Type of a response with several ranges (RFC 9110 §14.6).
MULTIPART = "multipart/byteranges"


def boundary() -> str:
    """A fresh multipart boundary: 20 characters like nginx's, but random, so no file can
    contain it by design (nginx counts up)."""
    return secrets.token_hex(10)


def part_header(boundary: str, content_type: str, byte_range: ByteRange, size: int) -> bytes:
    """What precedes one range in a ``multipart/byteranges`` body (nginx's layout)."""
    return (f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: {byte_range.content_range(size)}\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    """What follows the last range of a ``multipart/byteranges`` body."""
    return f"\r\n--{boundary}--\r\n".encode("latin-1")
