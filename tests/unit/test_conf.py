"""Reading our settings: the on-demand amplification bound, whole numbers and their ranges
(docs/settings.md)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from pulp_content_asgi import conf


@pytest.mark.parametrize(("given", "read"), [
    (None, None), (-1, None), ("", None), ("None", None), ("-1", None),
    (0, 0), ("0", 0), (1048576, 1048576), ("134217728", 134217728),
])
def test_the_unattended_bound_is_bytes_or_none(given, read):
    settings = SimpleNamespace(CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES=given,
                               CONTENT_ASGI_ROUTE_MIDDLEWARE=[])
    assert conf.load(settings).ondemand_unattended_bytes == read


def test_the_unattended_bound_is_off_by_default():
    """Off: a bound makes consecutive-range clients refetch big files (docs/settings.md)."""
    assert conf.load(SimpleNamespace(CONTENT_ASGI_ROUTE_MIDDLEWARE=[])
                     ).ondemand_unattended_bytes is None


def _load(**given):
    return conf.load(SimpleNamespace(CONTENT_ASGI_ROUTE_MIDDLEWARE=[], **given))


@pytest.mark.parametrize(("given", "read"), [(1, 1), ("3", 3), (" 16 ", 16), (4096, 4096)])
def test_file_reading_threads_are_read_as_given(given, read):
    assert _load(CONTENT_ASGI_FILE_READ_THREADS=given).file_read_threads == read


def test_file_reading_threads_default_to_granians_own_pool():
    assert _load().file_read_threads == 512


@pytest.mark.parametrize(("given", "said"), [
    (0, "must be between 1 and 4096; it is 0"),
    ("-1", "must be between 1 and 4096; it is -1"),
    (4097, "must be between 1 and 4096; it is 4097"),
    (10 ** 20, "must be between 1 and 4096"),
    ("abc", "must be a whole number; it is 'abc'"),
    ("", "must be a whole number; it is ''"),
    (1.5, "must be a whole number; it is 1.5"),
    (True, "must be a whole number; it is True"),
    ([1], "must be a whole number; it is [1]"),
])
def test_a_bad_number_is_refused_naming_the_setting(given, said):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="CONTENT_ASGI_FILE_READ_THREADS " +
                       re.escape(said)):
        _load(CONTENT_ASGI_FILE_READ_THREADS=given)
    with pytest.raises(ImproperlyConfigured, match="CONTENT_ASGI_MAX_CONNECTIONS must be a"):
        _load(CONTENT_ASGI_MAX_CONNECTIONS="abc")


def test_the_setting_reaches_granian(monkeypatch):
    """What ``pulp-content-asgi --server granian`` hands granian's Server."""
    import granian.server

    from pulp_content_asgi.server import runners

    given: dict = {}

    class Server:
        def __init__(self, *args, **kwargs):
            given.update(kwargs)

        def serve(self):
            pass

    monkeypatch.setattr(granian.server, "Server", Server)
    runners.run("granian", [runners.Address("127.0.0.1", 1)], workers=2, timeout=5,
                log_level="warning", reload=False, reuse_port=True, file_read_threads=3)
    assert given["runtime_blocking_threads"] == 3 and given["workers"] == 2


@pytest.mark.parametrize("given", ["abc", 1.5, "1e6"])
def test_an_unattended_bound_that_is_no_number_is_refused_naming_the_setting(given):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured,
                       match="CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES must be a whole number"):
        _load(CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES=given)
