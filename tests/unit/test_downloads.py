"""Which upstream URLs are sent byte for byte (``bridge/downloads.exact_url``)."""

from __future__ import annotations

import pytest
from yarl import URL

from pulp_content_asgi.bridge.downloads import exact_url

SIGNED = ("https://cdn.example/a/b.rpm?X-Amz-Credential=AKIA%2F20260101%2Fus-east-1"
          "&X-Amz-Signature=ab%2fcd%3D%3D&token=a+b%7Ec")


def test_a_well_formed_signed_url_is_sent_as_written():
    url = exact_url(SIGNED)
    assert isinstance(url, URL)
    assert str(url) == SIGNED
    assert url.raw_path_qs == SIGNED.removeprefix("https://cdn.example")


def test_the_requoting_it_avoids_would_change_the_signature():
    assert str(URL(SIGNED)) != SIGNED  # yarl's default: %2F -> /, %7E -> ~


@pytest.mark.parametrize("url", [
    "https://cdn.example/a b.rpm",  # a space
    "https://cdn.example/é.rpm",  # not ASCII
    "https://cdn.example/100%.rpm",  # a lone %
    "http://[::1]:8080/a.rpm",  # an IPv6 host
])
def test_other_urls_are_left_to_aiohttp(url):
    assert exact_url(url) == url
