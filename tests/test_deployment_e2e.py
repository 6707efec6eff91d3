"""The shipped nginx snippet, in front of the app, passes what clients need."""

from __future__ import annotations

import os
from urllib.parse import unquote

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import stop
from tests.helpers import ROOT, follow_listing, start_nginx

SNIPPET = os.path.join(ROOT, "docs", "deployment", "nginx-pulp-content.conf")


@pytest.fixture(scope="module")
def nginx(server):
    backend = server.base.rsplit(":", 1)[1]
    with open(SNIPPET) as shipped:
        shipped_text = shipped.read().replace("127.0.0.1:24816", f"127.0.0.1:{backend}")
    running, _port = start_nginx("snippet", lambda port: shipped_text.replace(
        "listen 127.0.0.1:8080", f"listen 127.0.0.1:{port}"))
    yield running
    stop(running)


def test_downloads_ranges_redirects_and_large_headers_pass(nginx, unique):
    blob = os.urandom(400_000)
    repo = data.repository(f"behind-{unique}", {"f.bin": blob})
    distribution = data.distribute(f"behind-{unique}",
                                   publication=data.publish(repo.latest_version()))
    base = nginx.url(f"/pulp/content/{distribution.base_path}")
    assert httpx.get(f"{base}/f.bin").content == blob
    ranged = httpx.get(f"{base}/f.bin", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == blob[10:20]
    redirect = httpx.get(base)
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"/pulp/content/{distribution.base_path}/"
    big_header = {"X-CLIENT-CERT": "x" * 12 * 1024}
    assert httpx.get(f"{base}/f.bin", headers=big_header).status_code == 200


def test_every_listing_link_works_through_nginx(nginx, unique):
    """nginx refuses a bare ``%`` in a path with 400: pulpcore's ``./100%.txt`` link broke
    behind it. Every href of a listing, followed through nginx, fetches its entry."""
    files = {"100%.txt": b"hundred", "%41.txt": b"percent-41", "d%25r/in.txt": b"in",
             "\u00fcn\u00ef.txt": b"unicode", "a&b;c.txt": b"amp"}
    repo = data.repository(f"behind-list-{unique}", files)
    distribution = data.distribute(f"behind-list-{unique}",
                                   publication=data.publish(repo.latest_version()))
    found = follow_listing(httpx.get, nginx.url(f"/pulp/content/{distribution.base_path}/"))
    assert {unquote(name): body for name, body in found.items()} == files
