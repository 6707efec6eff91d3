"""Serving files, listings and redirects through a real server on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess

import httpx
import pytest

from pulp_content_asgi.devtools import data
from tests.helpers import also_in, follow_listing, raw_get, unique_name, unit_at, url

BODY = bytes(range(256)) * 2048  # 512 KiB: streamed, not inlined
SMALL = b"hello, pulp\n"


@pytest.fixture(scope="module")
def dist(request):
    """A published repository with small, large, empty and nested files."""
    u = unique_name()
    repo = data.repository(f"e2e-{u}", {
        "small.txt": SMALL,
        "big.bin": BODY,
        "empty.dat": b"",
        "pkgs/data.json": b'{"a": 1}',
        "pkgs/sub/deep.tar.gz": b"\x1f\x8b" + b"0" * 100,
        "site/index.html": b"<h1>site</h1>",
        "odd name: 100%.txt": b"odd",
        "UPPER.JPG": b"jpg",
        "noext": b"?",
    })
    publication = data.publish(repo.latest_version())
    return data.distribute(f"e2e-{u}", publication=publication)


def test_small_file_with_headers(any_server, dist):
    response = httpx.get(url(any_server, dist, "small.txt"))
    assert response.status_code == 200
    assert response.content == SMALL
    headers = response.headers
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == str(len(SMALL))
    assert headers["x-pulp-artifact-size"] == str(len(SMALL))
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{hashlib.sha256(SMALL).hexdigest()}"'
    assert headers["cache-control"] == "public, max-age=0, must-revalidate"
    assert "last-modified" in headers


def test_large_file_streams_exact_bytes(any_server, dist):
    with httpx.stream("GET", url(any_server, dist, "big.bin")) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(BODY))
        assert response.read() == BODY


def test_zero_byte_file(any_server, dist):
    response = httpx.get(url(any_server, dist, "empty.dat"))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("pkgs/data.json", "application/json"), ("pkgs/sub/deep.tar.gz", "application/gzip"),
     ("UPPER.JPG", "image/jpeg"), ("noext", "application/octet-stream"),
     ("big.bin", "application/octet-stream")],
)
def test_content_type_from_pulpcore_mime_map(server, dist, path, content_type):
    response = httpx.get(url(server, dist, path))
    assert response.headers["content-type"] == content_type
    assert "content-encoding" not in response.headers


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "body"),
    [
        ("bytes=0-9", 206, f"bytes 0-9/{len(BODY)}", BODY[0:10]),
        ("bytes=1000-", 206, f"bytes 1000-{len(BODY) - 1}/{len(BODY)}", BODY[1000:]),
        ("bytes=-100", 206, f"bytes {len(BODY) - 100}-{len(BODY) - 1}/{len(BODY)}",
         BODY[-100:]),
        (f"bytes={len(BODY) - 500}-{len(BODY) + 1000}", 206,
         f"bytes {len(BODY) - 500}-{len(BODY) - 1}/{len(BODY)}", BODY[-500:]),
        ("bytes=-1-11", 416, f"bytes */{len(BODY)}", None),
        (f"bytes={len(BODY)}-", 416, f"bytes */{len(BODY)}", None),
        ("bytes=5-1", 416, f"bytes */{len(BODY)}", None),
        # As nginx: another unit, or more bytes than the file through overlaps, is the
        # whole file; several ranges are a multipart 206 (tests/test_ranges_nginx_e2e.py).
        ("items=0-9", 200, None, BODY),
        (f"bytes=0-,0-{len(BODY) - 1}", 200, None, BODY),
    ],
)
def test_ranges(any_server, dist, range_header, status, content_range, body):
    response = httpx.get(url(any_server, dist, "big.bin"), headers={"Range": range_header})
    assert response.status_code == status
    assert response.headers.get("content-range") == content_range
    if body is not None:
        assert response.content == body
        assert response.headers["content-length"] == str(len(body))
    else:  # as pulpcore-content, a 416 still names the representation and its policy
        assert response.headers["etag"] == f'"{hashlib.sha256(BODY).hexdigest()}"'
        assert response.headers["x-pulp-artifact-size"] == str(len(BODY))
        assert response.headers["cache-control"] == "public, max-age=0, must-revalidate"


def test_several_ranges_are_one_multipart_response(any_server, dist):
    """pulpcore-content answers 416; nginx (and now we) a 206 multipart/byteranges."""
    response = httpx.get(url(any_server, dist, "big.bin"),
                         headers={"Range": "bytes=10-19,0-4"})
    assert response.status_code == 206
    kind, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert kind == "multipart/byteranges"
    size = len(BODY)
    assert response.content == (
        f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Range: bytes 10-19/{size}\r\n\r\n".encode() + BODY[10:20]
        + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Range: bytes 0-4/{size}\r\n\r\n".encode() + BODY[0:5]
        + f"\r\n--{boundary}--\r\n".encode())
    assert response.headers["content-length"] == str(len(response.content))
    assert "content-range" not in response.headers


def test_range_on_a_small_file(server, dist):
    response = httpx.get(url(server, dist, "small.txt"), headers={"Range": "bytes=7-"})
    assert response.status_code == 206
    assert response.content == SMALL[7:]


def test_if_range_with_stale_validator_sends_everything(server, dist):
    response = httpx.get(url(server, dist, "big.bin"),
                         headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert response.status_code == 200
    assert response.content == BODY


def test_if_range_with_current_etag_honours_range(server, dist):
    etag = httpx.head(url(server, dist, "big.bin")).headers["etag"]
    response = httpx.get(url(server, dist, "big.bin"),
                         headers={"Range": "bytes=0-9", "If-Range": etag})
    assert response.status_code == 206
    assert response.content == BODY[:10]


def test_conditional_requests(any_server, dist):
    first = httpx.get(url(any_server, dist, "big.bin"))
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    not_modified = httpx.get(url(any_server, dist, "big.bin"), headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert httpx.get(url(any_server, dist, "big.bin"),
                     headers={"If-Modified-Since": modified}).status_code == 304
    assert httpx.get(url(any_server, dist, "big.bin"),
                     headers={"If-None-Match": '"nope"'}).status_code == 200
    failed = httpx.get(url(any_server, dist, "big.bin"), headers={"If-Match": '"nope"'})
    assert failed.status_code == 412
    assert httpx.get(url(any_server, dist, "big.bin"),
                     headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
                     ).status_code == 412
    assert httpx.get(url(any_server, dist, "big.bin"), headers={"If-Match": etag}
                     ).status_code == 200


def test_head_sends_headers_without_body(any_server, dist):
    response = httpx.head(url(any_server, dist, "big.bin"))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(BODY))
    assert response.content == b""
    small = httpx.head(url(any_server, dist, "small.txt"))
    assert small.headers["content-length"] == str(len(SMALL))


def test_listing(any_server, dist):
    response = httpx.get(url(any_server, dist))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert f"<h1>Index of /pulp/content/{dist.base_path}/</h1>" in page
    assert '<a href="../">../</a>' in page
    for name in ("small.txt", "big.bin", "pkgs/", "site/"):
        assert f'<a href="./{name}">{name}</a>' in page
    assert '<a href="./odd%20name:%20100%25.txt">odd name: 100%.txt</a>' in page
    assert "0 Bytes" in page
    assert "524.3 kB" in page


#: Names whose links broke in pulpcore's listings (and in ours before #16): a browser
#: decodes %41 to A, stops at # and ?, and nginx refuses a bare % with 400; the last one
#: was live markup on the content origin.
TRICKY = {"%41.txt": b"percent-41", "d%25r/in.txt": b"in d%25r", "a#b.txt": b"hash",
          "q?x=1.txt": b"question", "100%.txt": b"hundred", "sp ace.txt": b"space",
          "\u00fcn\u00ef.txt": b"unicode", "a&b;c.txt": b"amp",
          "<svg onload=alert(1)>/f.txt": b"markup"}


@pytest.fixture(scope="module")
def tricky():
    u = unique_name()
    repo = data.repository(f"tricky-{u}", TRICKY)
    return data.distribute(f"tricky-{u}", publication=data.publish(repo.latest_version()))


def test_every_listing_link_fetches_its_entry(any_server, tricky):
    """Follow every href of the listing (and of the listings it links to): each one is the
    entry it names. The page title is text, never markup."""
    from urllib.parse import unquote

    found = follow_listing(httpx.get, url(any_server, tricky))
    assert {unquote(name): body for name, body in found.items()} == TRICKY
    page = httpx.get(url(any_server, tricky, "%3Csvg%20onload=alert(1)%3E/")).text
    assert "<svg" not in page
    assert ("<h1>Index of /pulp/content/"
            f"{tricky.base_path}/&lt;svg onload=alert(1)&gt;/</h1>") in page


def test_distribution_listing_links_fetch_their_distribution(server, unique):
    """Base paths with characters a URL must encode (pulpcore's database refuses spaces,
    ``?`` and ``#`` in base paths, not these): the partial-path listing links to each
    distribution's own listing."""
    from urllib.parse import unquote

    segments = ("%41", "<b>", "100%", "\u00fc&x")
    for segment in segments:
        repo = data.repository(f"grp-{unique}-{segment}", {"f.txt": segment.encode()})
        data.distribute(f"grp-{unique}/{segment}",
                        publication=data.publish(repo.latest_version()))
    found = follow_listing(httpx.get, server.url(f"/pulp/content/grp-{unique}/"))
    assert {unquote(name): body for name, body in found.items()} == {
        f"{segment}/f.txt": segment.encode() for segment in segments}
    root = httpx.get(server.url("/pulp/content/")).text
    assert f'<a href="./grp-{unique}/">' in root


def test_trailing_slash_redirects(any_server, dist):
    for path, location in [("", f"/pulp/content/{dist.base_path}/"),
                           ("pkgs", f"/pulp/content/{dist.base_path}/pkgs/"),
                           ("site", f"/pulp/content/{dist.base_path}/site/")]:
        target = url(any_server, dist, path)
        target = target.rstrip("/") if path == "" else target
        response = httpx.get(target)
        assert response.status_code == 301, path
        assert response.headers["location"] == location


#: A query with what a redirect must not touch: encoded slashes, an invalid escape, quotes,
#: "+" and ";", empty pairs, UTF-8 (percent-encoded). A raw non-ASCII byte never reaches
#: the app: granian and uvicorn refuse the request line with 400.
QUERY = "x=1&y=%2F&e=%zz&q='a'+b;c&&=&u=%C3%A9&p=%2e%2e/"


def test_every_redirect_keeps_the_query_string_byte_for_byte(any_server, dist, unique):
    """pulpcore-content drops it (``…/dir?x=1`` → ``Location: …/dir/``)."""
    data.distribute(f"grp-{unique}/a")
    base = f"/pulp/content/{dist.base_path}"
    for path, location in [
            (base, f"{base}/"),  # the distribution root
            (f"{base}/pkgs", f"{base}/pkgs/"),  # a directory listing
            (f"{base}/site", f"{base}/site/"),  # a directory with index.html
            ("/pulp/content", "/pulp/content/"),  # the bare prefix
            (f"/pulp/content/grp-{unique}", f"/pulp/content/grp-{unique}/")]:  # partial
        status, headers, _ = raw_get(any_server, f"{path}?{QUERY}")
        assert status == 301, path
        assert headers["location"] == f"{location}?{QUERY}", path
        assert raw_get(any_server, path)[1]["location"] == location  # no "?" added


def test_index_html_in_a_subfolder(server, dist):
    response = httpx.get(url(server, dist, "site/"))
    assert response.status_code == 200
    assert response.content == b"<h1>site</h1>"
    assert response.headers["content-type"] == "text/html"  # the file's own type


def test_root_listing_and_bare_prefix(any_server, dist):
    root = httpx.get(any_server.url("/pulp/content/"))
    assert root.status_code == 200
    assert f'<a href="./{dist.base_path}/">' in root.text
    assert "<h1>Index of /pulp/content/</h1>" in root.text
    bare = httpx.get(any_server.url("/pulp/content"))
    assert bare.status_code == 301
    assert bare.headers["location"] == "/pulp/content/"
    head = httpx.head(any_server.url("/pulp/content/"))
    assert head.status_code == 200 and head.headers["content-type"] == "text/html; charset=utf-8"


def test_not_found(any_server, dist):
    response = httpx.get(url(any_server, dist, "nope.txt"))
    assert response.status_code == 404
    assert response.text == "404: Not Found"
    assert httpx.get(any_server.url("/pulp/content/no-such-distribution/x")).status_code == 404
    assert httpx.get(any_server.url("/somewhere/else")).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(server, dist, method):
    response = httpx.request(method, url(server, dist, "small.txt"))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_names_needing_percent_encoding(server, dist):
    response = httpx.get(url(server, dist, "odd%20name%3A%20100%25.txt"))
    assert response.status_code == 200
    assert response.content == b"odd"


@pytest.mark.parametrize(
    ("raw_path", "statuses"),
    [
        ("/pulp/content/{base}/../{base}/small.txt", {400}),
        ("/pulp/content/{base}/%2e%2e/%2e%2e/etc/passwd", {400}),
        ("/pulp/content/{base}/%2E%2E%2Fsmall.txt", {400}),
        ("/pulp/content/{base}/small.txt%00", {400}),
        ("/pulp/content/{base}/%ff", {400}),
        ("/pulp/content/{base}//small.txt", {200}),
        ("/pulp/content/{base}/" + "x" * 6000, {400, 414, 431}),
    ],
)
def test_malicious_paths_get_a_clean_4xx(server, dist, raw_path, statuses):
    # curl --path-as-is sends the bytes unchanged (httpx would normalise them).
    target = server.url(raw_path.format(base=dist.base_path))
    out = subprocess.run(["curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                          target], capture_output=True, text=True, timeout=30)
    assert int(out.stdout) in statuses


@pytest.mark.parametrize(("header", "status"), [
    # Ranges we cannot parse are unsatisfiable (as nginx and pulpcore-content answer them).
    ({"Range": "bytes=oops"}, 416),
    # DEL is not allowed in a field value (RFC 9110 §5.5): the server refuses the request.
    ({"Range": "\x7f"}, 400),
    # Unparseable validators never match: the file is served (RFC 9110 §13.1).
    ({"If-Modified-Since": "garbage"}, 200), ({"If-None-Match": "\"unterminated"}, 200),
    ({"If-Range": "garbage"}, 200),
    # If-Match without a usable entity tag cannot match (RFC 9110 §13.1.1).
    ({"If-Match": ","}, 412),
])
def test_garbage_headers_get_their_exact_answer(server, dist, header, status):
    response = httpx.get(url(server, dist, "big.bin"), headers=header)
    assert response.status_code == status
    if status == 200:
        assert response.content == BODY
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{len(BODY)}"


def test_missing_file_in_storage_is_a_logged_500_naming_the_artifact(server, unique):
    repo = data.repository(f"missing-{unique}", {"gone.bin": os.urandom(100)})
    publication = data.publish(repo.latest_version())
    distribution = data.distribute(f"missing-{unique}", publication=publication)
    artifact = repo.latest_version().content.first().contentartifact_set.first().artifact
    os.unlink(artifact.file.path)
    response = httpx.get(url(server, distribution, "gone.bin"))
    assert response.status_code == 500
    assert "missing from storage" in response.text
    assert str(artifact.pk) in server.log()


def test_two_units_at_one_path_answer_the_one_added_last(any_server, unique):
    """A pulp_ostree re-sync leaves two ``summary`` units in one version: pulpcore-content
    answers 500 for it, every time. The unit added last is served and listed once."""
    from pulp_ostree.app.models import OstreeDistribution, OstreeRepository, OstreeSummary

    repo = OstreeRepository.objects.create(name=f"ostree-{unique}")
    first = unit_at(OstreeSummary, "summary", f"first sync {unique}".encode())
    with repo.new_version() as version:
        version.add_content(OstreeSummary.objects.filter(pk=first.pk))
    resynced = f"summary of the re-sync {unique}".encode()  # 33 bytes
    also_in(version, unit_at(OstreeSummary, "summary", resynced))
    distribution = OstreeDistribution.objects.create(name=f"ostree-{unique}",
                                                     base_path=f"ostree-{unique}",
                                                     repository=repo)
    for _ in range(2):
        response = httpx.get(url(any_server, distribution, "summary"))
        assert (response.status_code, response.content) == (200, resynced)
    page = httpx.get(url(any_server, distribution)).text
    assert page.count('<a href="./summary">summary</a>') == 1
    assert f"{len(resynced)} Bytes" in page  # the served unit's size
