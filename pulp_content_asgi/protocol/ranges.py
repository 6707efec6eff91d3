"""Single byte ranges (RFC 9110 §14): parsing, resolution against a size, and headers.

Byte positions are inclusive, as in the RFC. What pulpcore-content answers is kept where it
is stricter than the RFC: a Range header it cannot parse (``bytes=-1-11``, several ranges,
another unit) gets 416 with ``Content-Range: bytes */<size>`` rather than being ignored,
because Pulp's functional tests and existing clients rely on it (pulpcore #3052, #3054).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.utils.http import parse_http_date_safe

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """The Range header is malformed or selects no byte of the representation (→ 416)."""


@dataclass(frozen=True)
class RangeSpec:
    """A syntactically valid single range: ``first-last``, ``first-`` or ``-suffix``."""

    first: int | None
    last: int | None


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


#: Positions longer than this many digits are beyond any file (2**63 has 19 digits); they
#: are read as "past the end" instead of being converted (Python refuses integers of more
#: than 4300 digits, and would otherwise turn a hostile header into a 500).
MAX_DIGITS = 19
BEYOND = 2**63


def _position(digits: str) -> int | None:
    if not digits:
        return None
    return int(digits) if len(digits) <= MAX_DIGITS else BEYOND


def parse_range_header(value: str | None) -> RangeSpec | None:
    """Parse a Range header; ``None`` means "no range asked", errors mean 416."""
    if value is None:
        return None
    match = _SPEC.match(value)
    if not match or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable(f"unsupported Range header {value!r}")
    first = _position(match.group(1))
    last = _position(match.group(2))
    if first is not None and last is not None and first > last:
        raise RangeNotSatisfiable(f"range start after its end in {value!r}")
    return RangeSpec(first, last)


def resolve_range(spec: RangeSpec, size: int) -> ByteRange:
    """Pin a range to a representation of ``size`` bytes; an end past the size is truncated."""
    if spec.first is None:
        suffix = spec.last or 0
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range")
        return ByteRange(max(size - suffix, 0), size - 1)
    if spec.first >= size:
        raise RangeNotSatisfiable(f"range starts at {spec.first}, beyond {size} bytes")
    end = size - 1 if spec.last is None else min(spec.last, size - 1)
    return ByteRange(spec.first, end)


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
