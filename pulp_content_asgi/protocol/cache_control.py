"""``Cache-Control`` for answers meant for one client (RFC 9111 §5.2).

Every answer for a guarded distribution is meant for the client its guard let in, so it
must not be stored by a shared cache (a CDN, nginx ``proxy_cache``) and handed to someone
else: it says ``private`` (RFC 9111 §5.2.2.7). What the plugin or the handler said is
kept and ``private`` merged in by Django's ``patch_cache_control`` (the same merge Django's
``cache_control(private=True)`` decorator does): pulp_rpm's ``no-cache`` on repository
metadata becomes ``no-cache, private``, pulpcore's ``public, max-age=0, must-revalidate``
becomes ``max-age=0, must-revalidate, private`` (``public`` would let a shared cache store
it), a ``private`` that names fields is widened to the whole response. ``no-store``
already keeps every cache away, so such a value is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.cache import patch_cache_control

HEADER = "Cache-Control"


class _Carrier:
    """The two things ``patch_cache_control`` uses of a Django response."""

    def __init__(self, value: str) -> None:
        self.headers = {HEADER: value} if value else {}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def private(value: str | None) -> str:
    """``value`` with ``private`` merged in (Django's ``patch_cache_control``: ``public``
    dropped, directive names lower-cased, ``private`` last when it was missing); a value
    that says ``no-store`` is returned unchanged. Empty list elements are dropped first
    (RFC 9110 §5.6.1 allows them; Django would keep them as empty directives)."""
    sent = value or ""
    elements = [e.strip() for e in sent.split(",") if e.strip()]
    if any(e.split("=", 1)[0].strip().lower() == "no-store" for e in elements):
        return sent
    carrier = _Carrier(", ".join(elements))
    patch_cache_control(carrier, private=True)
    return carrier.headers[HEADER]


def private_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with one ``Cache-Control`` that says ``private`` (:func:`private`);
    values under other spellings of the name are merged into it, in order."""
    values = [v for k, v in headers.items() if k.lower() == HEADER.lower()]
    kept = {k: v for k, v in headers.items() if k.lower() != HEADER.lower()}
    kept[HEADER] = private(", ".join(values) if values else None)
    return kept
