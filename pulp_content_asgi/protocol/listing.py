"""Directory listing HTML: the page pulpcore-content renders, with working links.

Same structure, sorting, ``./`` link prefix (names with ``:`` stay relative links), padding
to column 100, ``%d-%b-%Y %H:%M`` dates and Jinja's decimal ``filesizeformat`` sizes, so
scrapers and tests written against the old app keep working; for names made of URL path
characters (RFC 3986 ``pchar``, but ``;``) the page is byte for byte pulpcore's.

Two things differ, because pulpcore's page breaks on some names (docs/differences.md):

* each ``href`` is the name **percent-encoded** (UTF-8, RFC 3986 §2.1), then HTML-escaped,
  so it resolves back to that entry: pulpcore puts the raw name there, and a browser then
  requests ``%41.txt`` as ``A.txt``, cuts ``a#b`` at the ``#``, and nginx refuses
  ``100%.txt`` with 400;
* the title and heading (the request path) are **HTML-escaped** like every other text:
  pulpcore inserts the path raw, so a content unit named ``<svg onload=...>/f.txt`` put
  live markup on the content origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from markupsafe import escape

#: The listing's Content-Type, as aiohttp labels ``text=`` responses (pulpcore's cache
#: stores it so).
CONTENT_TYPE = "text/html; charset=utf-8"
_UNITS = ("kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: int) -> str:
    """Jinja's ``filesizeformat`` (decimal units): ``0 Bytes``, ``1 Byte``, ``4.2 MB``."""
    value = float(size)
    if value == 1:
        return "1 Byte"
    if value < 1000:
        return f"{int(value)} Bytes"
    unit = "B"
    for i, unit in enumerate(_UNITS):
        if value < 1000 ** (i + 2):
            return f"{1000 * value / 1000 ** (i + 2):.1f} {unit}"
    return f"{1000 * value / 1000 ** (len(_UNITS) + 1):.1f} {unit}"


@dataclass(frozen=True)
class Listing:
    """What a listing page shows: a title, the entry names and what is known about them.

    Directory names end with ``/``. ``root`` pages have no ``../`` link.
    """

    title: str
    names: frozenset[str]
    root: bool = False
    dates: Mapping[str, datetime] = field(default_factory=dict)
    sizes: Mapping[str, int] = field(default_factory=dict)


#: Characters a path segment may hold as they are (RFC 3986 ``pchar`` without ``%``, plus
#: ``/`` for the trailing slash of directories); everything else is percent-encoded. ``;``
#: is encoded too: RFC 2396 parsers (Python's ``urljoin`` among them) read it as the start
#: of path parameters and drop a trailing one.
SEGMENT_SAFE = "/:@!$&'()*+,="


def href(name: str) -> str:
    """The link to entry ``name`` from its listing, ready for an HTML attribute.

    ``a b%.txt`` gives ``./a%20b%25.txt``; ``x&y/`` gives ``./x&amp;y/``. Resolved against
    the listing's URL and percent-decoded, it is the listing's path plus ``name``.
    """
    return str(escape(f"./{quote(name, safe=SEGMENT_SAFE)}"))


def _row(name: str, date: datetime | None, size: int | None) -> str:
    label = str(escape(name))
    padding = " " * max(100 - len(label), 0)
    when = date.strftime("%d-%b-%Y %H:%M") if date else ""
    amount = human_size(size) if size is not None else ""
    return f'<a href="{href(name)}">{label}</a>{padding}{when}  {amount}\n'


def render(listing: Listing) -> str:
    """The HTML page for ``listing``."""
    rows: Iterable[str] = (
        _row(name, listing.dates.get(name), listing.sizes.get(name))
        for name in sorted(listing.names)
    )
    parent = "" if listing.root else '<a href="../">../</a>'
    title = escape(listing.title)
    return (
        f"\n<html>\n<head><title>Index of {title}</title></head>\n"
        f'<body bgcolor="white">\n<h1>Index of {title}</h1>\n'
        f"<hr><pre>{parent}\n{''.join(rows)}</pre><hr></body>\n</html>"
    )
