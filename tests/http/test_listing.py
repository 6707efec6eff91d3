"""Listing HTML is byte-for-byte what pulpcore-content renders."""

from datetime import UTC, datetime

import pytest

from pulp_content_asgi.protocol.listing import Listing, human_size, render

WHEN = datetime(2024, 3, 5, 7, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 Bytes"), (1, "1 Byte"), (999, "999 Bytes"), (1000, "1.0 kB"), (4200000, "4.2 MB"),
     (10**9, "1.0 GB"), (5 * 10**12, "5.0 TB")],
)
def test_human_size_matches_jinja_filesizeformat(size, text):
    assert human_size(size) == text


def test_entries_are_sorted_escaped_padded_and_dated():
    page = render(Listing("/pulp/content/foo/", frozenset({"b.txt", "a/", "x<y>"}),
                          dates={"b.txt": WHEN}, sizes={"b.txt": 4200000}))
    lines = page.splitlines()
    assert lines[5] == '<hr><pre><a href="../">../</a>'
    assert lines[6].startswith('<a href="./a/">a/</a>')
    assert lines[7] == '<a href="./b.txt">b.txt</a>' + " " * 95 + "05-Mar-2024 07:08  4.2 MB"
    assert lines[8].startswith('<a href="./x&lt;y&gt;">x&lt;y&gt;</a>')


def test_root_listing_has_no_parent_link():
    page = render(Listing("/pulp/content/", frozenset({"a/"}), root=True))
    assert "../" not in page
    assert "<title>Index of /pulp/content/</title>" in page


@pytest.mark.parametrize(
    ("names", "path"),
    [(set(), "/pulp/content/"), ({"a/", "b.txt", "x<y>&:z", "0"}, "/pulp/content/foo/"),
     ({"a" * 120, "1.iso"}, "/pulp/content/deep/er/")],
)
def test_identical_to_pulpcore_render_html(names, path):
    from django.conf import settings
    from pulpcore.content.handler import Handler

    dates = {n: WHEN for n in names if n != "0"}
    sizes = {n: i * 12345 for i, n in enumerate(sorted(names)) if not n.endswith("/")}
    expected = Handler.render_html(names, path=path, dates=dates, sizes=sizes)
    ours = render(Listing(path, frozenset(names), root=path == settings.CONTENT_PATH_PREFIX,
                          dates=dates, sizes=sizes))
    assert ours == expected
