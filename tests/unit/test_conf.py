"""Reading our settings: the on-demand amplification bound (docs/settings.md)."""

from __future__ import annotations

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
