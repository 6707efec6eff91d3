"""``CONTENT_ASGI_MIDDLEWARE``: deployment middleware wrapped around the whole application.

pulpcore-content deployments add aiohttp middlewares by editing the private
``app._middlewares`` (pulp-service: a client-IP rewrite, an extra response header). Here a
middleware is plain ASGI, the interface every ASGI server and framework shares: a factory
that takes the application and returns one (``(app) -> app``; a class whose ``__init__``
takes the app, or a function). They wrap everything the server calls, the lifespan and
the legacy fallback included, the first entry outermost. docs/settings.md#middleware
shows two examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

SETTING = "CONTENT_ASGI_MIDDLEWARE"
ASGIApp = Callable[..., Any]


def _factory(path: str) -> Callable[[ASGIApp], ASGIApp]:
    try:
        factory = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{SETTING}: cannot import {path!r} ({exc}). Each entry is the dotted path of "
            f"an ASGI middleware factory, a callable taking the application and returning "
            f"the wrapped one, e.g. 'mypackage.middleware.AddHeaders'.") from exc
    if not callable(factory):
        raise ImproperlyConfigured(f"{SETTING}: {path!r} is not callable; it must take the "
                                   f"ASGI application and return the wrapped one.")
    return factory  # type: ignore[no-any-return]


def factories(paths: Sequence[str]) -> list[Callable[[ASGIApp], ASGIApp]]:
    """The factories ``paths`` name, imported; ImproperlyConfigured naming the setting
    and the entry when one cannot be imported or is not callable."""
    return [_factory(path) for path in paths]


def wrap(app: ASGIApp, paths: Sequence[str]) -> ASGIApp:
    """``app`` inside the middleware factories named by ``paths``, ``paths[0]``
    outermost (it sees the request first and the response last), as Django's
    ``MIDDLEWARE`` orders them. ImproperlyConfigured naming the setting and the entry
    when one cannot be imported, fails or does not return an application."""
    for path, factory in reversed(list(zip(paths, factories(paths), strict=True))):
        try:
            wrapped = factory(app)
        except Exception as exc:
            raise ImproperlyConfigured(f"{SETTING}: {path!r} failed to wrap the application: "
                                       f"{exc!r}. It must take the ASGI application as its "
                                       f"one argument.") from exc
        if not callable(wrapped):
            raise ImproperlyConfigured(f"{SETTING}: {path!r} returned {wrapped!r}, not an "
                                       f"ASGI application.")
        app = wrapped
    return app
