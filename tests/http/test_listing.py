"""Listing HTML: pulpcore-content's page, with links that resolve back to their entry and
no markup from names or paths (properties checked with hypothesis)."""

from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pulp_content_asgi.protocol.listing import SEGMENT_SAFE, Listing, href, human_size, render
from pulp_content_asgi.protocol.paths import ContentPath, decode_path, locate
from tests import adversarial

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
    assert lines[8].startswith('<a href="./x%3Cy%3E">x&lt;y&gt;</a>')


def test_root_listing_has_no_parent_link():
    page = render(Listing("/pulp/content/", frozenset({"a/"}), root=True))
    assert "../" not in page
    assert "<title>Index of /pulp/content/</title>" in page


@pytest.mark.parametrize(
    ("names", "path"),
    [(set(), "/pulp/content/"),
     ({"a/", "b.txt", "x&:z", "0", "libstdc++-1:2.rpm", "a=b,c,d@e!f$g'h(i)j*~"},
      "/pulp/content/foo/"),
     ({"a" * 120, "1.iso"}, "/pulp/content/deep/er/")],
)
def test_identical_to_pulpcore_render_html_for_url_path_characters(names, path):
    """Names made of RFC 3986 path characters but ``;`` (every name a repository normally
    holds) and plain paths: byte for byte pulpcore's page."""
    from django.conf import settings
    from pulpcore.content.handler import Handler

    dates = {n: WHEN for n in names if n != "0"}
    sizes = {n: i * 12345 for i, n in enumerate(sorted(names)) if not n.endswith("/")}
    expected = Handler.render_html(names, path=path, dates=dates, sizes=sizes)
    ours = render(Listing(path, frozenset(names), root=path == settings.CONTENT_PATH_PREFIX,
                          dates=dates, sizes=sizes))
    assert ours == expected


@pytest.mark.parametrize(("name", "link"), [
    ("%41.txt", "./%2541.txt"),  # pulpcore: ./%41.txt, which a browser requests as A.txt
    ("d%25r/", "./d%2525r/"),
    ("100%.txt", "./100%25.txt"),  # pulpcore: ./100%.txt, which nginx refuses with 400
    ("a#b.txt", "./a%23b.txt"),  # pulpcore: the browser requests ./a
    ("q?.txt", "./q%3F.txt"),  # pulpcore: the browser requests ./q with a query
    ("sp ace.txt", "./sp%20ace.txt"),
    ("\u00fcn\u00ef.txt", "./%C3%BCn%C3%AF.txt"),
    ("<svg onload=alert(1)>/", "./%3Csvg%20onload=alert(1)%3E/"),
    ('"quoted".txt', "./%22quoted%22.txt"),
    ("back\\slash", "./back%5Cslash"),
    ("a&b.txt", "./a&amp;b.txt"),
    ("it's", "./it&#39;s"),
    ("a;b", "./a%3Bb"),
])
def test_links_are_percent_encoded_then_html_escaped(name, link):
    assert href(name) == link


def test_title_and_heading_are_escaped():
    """The request path is text: a unit named like markup must not become markup on the
    content origin (which Pulp's nginx shares with the API)."""
    page = render(Listing("/pulp/content/x/<svg/onload=alert(1)>/", frozenset({"f.txt"})))
    assert "<svg" not in page
    assert "<title>Index of /pulp/content/x/&lt;svg/onload=alert(1)&gt;/</title>" in page
    assert "<h1>Index of /pulp/content/x/&lt;svg/onload=alert(1)&gt;/</h1>" in page


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text directly inside each (up to the
    next tag, start or end)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[int, str] = {}
        self._open: int | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = len(self.tags) - 1

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self.text[self._open] = self.text.get(self._open, "") + data


#: What a listing can hold: any text but "/" (a segment), with or without the trailing
#: "/" of a directory. Not "." or ".." (a URL resolves them away, even percent-encoded, and
#: requests with such segments are refused with 400), no control characters (refused in
#: request paths with 400) and no lone surrogates (not text in UTF-8).
_TEXT = st.characters(blacklist_categories=("Cs", "Cc"))
_SEGMENT = st.text(_TEXT.filter(lambda c: c != "/"), min_size=1).filter(
    lambda s: s not in (".", ".."))
_NAME = st.builds(lambda segment, directory: segment + ("/" if directory else ""),
                  _SEGMENT, st.booleans())


@pytest.mark.adversarial
@settings(max_examples=adversarial.examples(100))
@given(directory=st.lists(_SEGMENT, max_size=3), names=st.frozensets(_NAME, max_size=8))
@example(directory=["grp", "%41"], names=frozenset(
    {"%41.txt", "d%25r/", "a#b", "q?x", "100%.txt", "<svg onload=alert(1)>/", "x;y=z",
     "\\", "?", "#", "&amp;", "%", "%zz"}))
def test_every_link_resolves_back_to_its_entry_and_no_markup_survives(directory, names):
    """The page of ``directory`` (the request path, as a browser shows it decoded): each
    link, resolved against the page's URL as a browser does and percent-decoded, is the
    directory plus the entry's name; the only tags are the page's own, and every text is
    the name or path itself."""
    adversarial.TALLIES["listing"].counts["cases"] += 1
    path = "/pulp/content/" + "".join(f"{s}/" for s in directory)
    page_url = "http://content.example" + quote(path, safe=SEGMENT_SAFE)
    parsed = _Page()
    parsed.feed(render(Listing(path, names)))
    parsed.close()
    tags = [tag for tag, _ in parsed.tags]
    assert tags == ["html", "head", "title", "body", "h1", "hr", "pre", "a",
                    *["a"] * len(names), "hr"]
    assert parsed.text[2] == f"Index of {path}"  # <title>
    assert parsed.text[4] == f"Index of {path}"  # <h1>
    entries = range(8, 8 + len(names))
    assert [parsed.text[i] for i in entries] == sorted(names)  # each <a>'s text: the name
    for i, name in zip(entries, sorted(names), strict=True):
        target = urlsplit(urljoin(page_url, parsed.tags[i][1]["href"]))
        assert unquote(target.path, errors="strict") == path + name
        assert not target.query and not target.fragment


_SHORT_SEGMENT = st.text(_TEXT.filter(lambda c: c != "/"), min_size=1, max_size=30).filter(
    lambda s: s not in (".", ".."))
_SHORT_NAME = st.builds(lambda segment, directory: segment + ("/" if directory else ""),
                        _SHORT_SEGMENT, st.booleans())


@pytest.mark.adversarial
@settings(max_examples=adversarial.examples(100))
@given(directory=st.lists(_SHORT_SEGMENT, max_size=3), names=st.frozensets(_SHORT_NAME,
                                                                            max_size=8),
       domain=st.one_of(st.none(), _SHORT_SEGMENT))
@example(directory=[], names=frozenset({"%2e%2e/", "a%2Fb", "%00", "\u00e9/", "#/", "?x/"}),
         domain=None)
@example(directory=["%41"], names=frozenset({"100%.txt", "a;b", "x&amp;y"}), domain="d%2F")
def test_every_link_is_routed_back_to_its_entry_by_the_app_itself(directory, names, domain):
    """Base-path and file listings, with and without a domain segment: each link, resolved
    by a browser and sent back as raw bytes, is decoded and located by the app's own path
    rules (not ``unquote``) to exactly the directory plus the entry; never a 4xx."""
    adversarial.TALLIES["listing"].counts["cases"] += 1
    prefix = "/pulp/content/" + ("" if domain is None else f"{domain}/")
    path = prefix + "".join(f"{s}/" for s in directory)
    page_url = "http://content.example" + quote(path, safe=SEGMENT_SAFE)
    parsed = _Page()
    parsed.feed(render(Listing(path, names, root=not directory)))
    parsed.close()
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert len(links) == len(names) + bool(directory)
    for name, link in zip(sorted(names), links[bool(directory):], strict=True):
        sent = urlsplit(urljoin(page_url, link)).path.encode("ascii")
        decoded = decode_path(sent)
        located = locate(decoded, "/pulp/content/", domain is not None)
        assert located == ContentPath(domain, (path + name)[len(prefix):])
