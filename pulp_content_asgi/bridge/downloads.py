"""pulpcore's downloaders are aiohttp clients: which of their errors mean "try the next
remote", and what an upstream refusal says to the client."""

from __future__ import annotations

import asyncio

from aiohttp import ClientConnectionError, ClientResponseError
from pulpcore.exceptions import UnsupportedDigestValidationError

#: Failures after which the next remote artifact may be tried, if no byte was sent yet.
SKIPPABLE: tuple[type[BaseException], ...] = (
    ClientResponseError, ClientConnectionError, UnsupportedDigestValidationError,
    asyncio.TimeoutError)


def upstream_refusal(exc: BaseException | None) -> tuple[int, str] | None:
    """The upstream's HTTP status and message when ``exc`` is one, else None."""
    if isinstance(exc, ClientResponseError):
        return exc.status, exc.message
    return None
