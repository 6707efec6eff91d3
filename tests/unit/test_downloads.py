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


@pytest.mark.parametrize(("url", "sent"), [
    ("https://cdn.example/a b.rpm?sig=ab%2fcd%7e", "/a%20b.rpm?sig=ab%2fcd%7e"),
    ("https://cdn.example/\u00e9.rpm?sig=x%7e", "/%C3%A9.rpm?sig=x%7e"),
    ("https://cdn.example/100%.rpm?sig=x%2F", "/100%25.rpm?sig=x%2F"),
    ("http://[::1]:8080/a%7e?sig=x%7e%2f", "/a%7e?sig=x%7e%2f"),
])
def test_what_a_url_may_not_hold_is_escaped_and_the_rest_kept(url, sent):
    """Spaces, non-ASCII and a lone ``%`` are escaped; the signature's escapes are not
    touched (a review found them requoted when the URL also held a space)."""
    found = exact_url(url)
    assert isinstance(found, URL)
    assert found.raw_path_qs == sent


def test_an_internationalised_host_is_left_to_aiohttp():
    assert exact_url("https://b\u00fccher.example/a.rpm") == "https://b\u00fccher.example/a.rpm"
