"""CONTENT_ASGI_MIDDLEWARE's loader and the legacy origin setting, in-process: order,
and start-up errors that name the setting."""

from __future__ import annotations

import asyncio

import pytest
from django.core.exceptions import ImproperlyConfigured

from pulp_content_asgi.bridge.legacy import origin_from_setting
from pulp_content_asgi.entry.middleware import wrap

calls: list[str] = []


def outer(app):
    async def wrapped(scope, receive, send):
        calls.append("outer")
        await app(scope, receive, send)
    return wrapped


def inner(app):
    async def wrapped(scope, receive, send):
        calls.append("inner")
        await app(scope, receive, send)
    return wrapped


async def innermost(scope, receive, send):
    calls.append("app")


def nothing(app):
    return None


def test_the_first_entry_is_outermost():
    calls.clear()
    app = wrap(innermost, [f"{__name__}.outer", f"{__name__}.inner"])
    asyncio.run(app({"type": "http"}, None, None))
    assert calls == ["outer", "inner", "app"]
    assert wrap(innermost, []) is innermost


@pytest.mark.parametrize(("entry", "says"), [
    ("no_such_module_here.Middleware", "cannot import 'no_such_module_here.Middleware'"),
    (f"{__name__}.missing", f"cannot import '{__name__}.missing'"),
    (f"{__name__}.calls", "is not callable"),
    (f"{__name__}.innermost", "failed to wrap the application"),  # an app, not a factory
    (f"{__name__}.nothing", "returned None, not an ASGI application"),
])
def test_a_bad_entry_names_the_setting_and_the_entry(entry, says):
    with pytest.raises(ImproperlyConfigured) as raised:
        wrap(innermost, [f"{__name__}.outer", entry])
    assert str(raised.value).startswith("CONTENT_ASGI_MIDDLEWARE: ")
    assert says in str(raised.value)


@pytest.mark.parametrize(("value", "origin"), [
    ("http://127.0.0.1:24817", "http://127.0.0.1:24817"),
    ("http://127.0.0.1:24817/", "http://127.0.0.1:24817"),
    (" https://legacy.internal ", "https://legacy.internal"),
    ("http://[::1]:24817", "http://[::1]:24817"),
])
def test_legacy_origins(value, origin):
    assert origin_from_setting(value) == origin


@pytest.mark.parametrize("value", ["127.0.0.1:24817", "ftp://h", "http://h/pulp/content/",
                                   "http://h?x=1", "http://user:pw@h", "http://"])
def test_a_legacy_origin_that_is_no_origin_is_refused_by_name(value):
    with pytest.raises(ImproperlyConfigured, match="CONTENT_ASGI_LEGACY_ORIGIN must be"):
        origin_from_setting(value)
