"""Locating a request path in the content URL space, and refusing bad paths."""

import pytest

from pulp_content_asgi.protocol.paths import (
    AddSlash,
    BadPath,
    ContentPath,
    Outside,
    RootListing,
    decode_path,
    locate,
    quote_location,
)

PREFIX = "/pulp/content/"


@pytest.mark.parametrize(
    ("path", "domains", "target"),
    [
        ("/pulp/content/", False, RootListing(None)),
        ("/pulp/content", False, AddSlash("/pulp/content/")),
        ("/pulp/content/foo/bar.txt", False, ContentPath(None, "foo/bar.txt")),
        ("/pulp/content/foo/", False, ContentPath(None, "foo/")),
        ("/pulp/contentx", False, Outside()),
        ("/elsewhere/", False, Outside()),
        ("/pulp/content/", True, Outside()),
        ("/pulp/content", True, Outside()),
        ("/pulp/content/dom", True, AddSlash("/pulp/content/dom/")),
        ("/pulp/content/dom/", True, RootListing("dom")),
        ("/pulp/content/dom/foo/x", True, ContentPath("dom", "foo/x")),
    ],
)
def test_locate(path, domains, target):
    assert locate(path, PREFIX, domains) == target


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"/pulp/content/a%20b/c.txt", "/pulp/content/a b/c.txt"),
        (b"/pulp/content/a%2Fb", "/pulp/content/a/b"),
        (b"/pulp/content//a///b", "/pulp/content/a/b"),
        (b"/pulp/content/%E2%9C%93.txt", "/pulp/content/\u2713.txt"),
        (b"/pulp/content/a..b/c", "/pulp/content/a..b/c"),
    ],
)
def test_decode_path(raw, decoded):
    assert decode_path(raw) == decoded


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/pulp/content/../etc/passwd", 400),
        (b"/pulp/content/a/%2e%2e/%2E%2E/x", 400),
        (b"/pulp/content/a/%2e/x", 400),
        (b"/pulp/content/a%2f..%2fb", 400),
        (b"/pulp/content/a%00b", 400),
        (b"/pulp/content/a%0d%0aSet-Cookie:x", 400),
        (b"/pulp/content/%ff%fe", 400),
        (b"/pulp/content/" + b"a" * 5000, 414),
    ],
)
def test_bad_paths_are_client_errors(raw, status):
    with pytest.raises(BadPath) as refused:
        decode_path(raw)
    assert refused.value.status == status


def test_locations_are_percent_encoded():
    assert quote_location("/pulp/content/a b/\u2713/") == "/pulp/content/a%20b/%E2%9C%93/"
