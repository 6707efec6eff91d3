"""Directory listing HTML, byte-for-byte the page pulpcore-content renders.

Same structure, sorting, ``./`` link prefix (names with ``:`` stay relative links), padding
to column 100, ``%d-%b-%Y %H:%M`` dates and Jinja's decimal ``filesizeformat`` sizes, so
scrapers and tests written against the old app keep working. Like pulpcore, the title is
not escaped; names are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

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


def _row(name: str, date: datetime | None, size: int | None) -> str:
    label = str(escape(name))
    padding = " " * max(100 - len(label), 0)
    when = date.strftime("%d-%b-%Y %H:%M") if date else ""
    amount = human_size(size) if size is not None else ""
    return f'<a href="./{label}">{label}</a>{padding}{when}  {amount}\n'


def render(listing: Listing) -> str:
    """The HTML page for ``listing``."""
    rows: Iterable[str] = (
        _row(name, listing.dates.get(name), listing.sizes.get(name))
        for name in sorted(listing.names)
    )
    parent = "" if listing.root else '<a href="../">../</a>'
    return (
        f"\n<html>\n<head><title>Index of {listing.title}</title></head>\n"
        f'<body bgcolor="white">\n<h1>Index of {listing.title}</h1>\n'
        f"<hr><pre>{parent}\n{''.join(rows)}</pre><hr></body>\n</html>"
    )
