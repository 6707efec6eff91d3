"""``Cache-Control`` for answers meant for one client (RFC 9111 §5.2).

Every answer for a guarded distribution is meant for the client its guard let in, so it
must not be stored by a shared cache (a CDN, nginx ``proxy_cache``) and handed to someone
else: it says ``private`` (RFC 9111 §5.2.2.7). What the plugin or the handler said is
kept and ``private`` merged in: pulp_rpm's ``no-cache`` on repository metadata becomes
``private, no-cache``, pulpcore's ``public, max-age=0, must-revalidate`` becomes
``private, max-age=0, must-revalidate`` (``public`` would allow a shared cache to store
it). ``no-store`` already keeps every cache away, so such a value is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

HEADER = "Cache-Control"
PRIVATE = "private"


def directives(value: str) -> list[str]:
    """The directives of a ``Cache-Control`` value, as sent; a comma inside a quoted
    string (``no-cache="Set-Cookie, Vary"``) stays in its directive (RFC 9110 §5.6.4)."""
    found: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            found.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    found.append("".join(current).strip())
    return [d for d in found if d]  # the list syntax allows empty elements (§5.6.1)


def _name(directive: str) -> str:
    return directive.split("=", 1)[0].strip().lower()


def private(value: str | None) -> str:
    """``value`` with ``private`` merged in: ``public`` dropped, a ``private`` that names
    fields (which leaves the rest of the response storable) widened to the whole
    response; ``private`` first when it was missing. A value that says ``no-store``, or
    already says ``private`` and not ``public``, is returned unchanged."""
    sent = value or ""
    found = directives(sent)
    names = [_name(d) for d in found]
    if "no-store" in names:
        return sent
    kept = [d for d, name in zip(found, names, strict=True)
            if name != "public" and (name != PRIVATE or d.lower() == PRIVATE)]
    if PRIVATE not in (d.lower() for d in found):
        return ", ".join([PRIVATE, *kept])
    return sent if len(kept) == len(found) else ", ".join(kept)


def private_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with one ``Cache-Control`` that says ``private`` (:func:`private`);
    values under other spellings of the name are merged into it, in order."""
    values = [v for k, v in headers.items() if k.lower() == HEADER.lower()]
    kept = {k: v for k, v in headers.items() if k.lower() != HEADER.lower()}
    kept[HEADER] = private(", ".join(values) if values else None)
    return kept
