"""The shipped nginx snippet, in front of the app, passes what clients need."""

from __future__ import annotations

import os
import shutil
from urllib.parse import unquote

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import free_port, start, stop
from tests.helpers import ROOT, TEST_ROOT, follow_listing

SNIPPET = os.path.join(ROOT, "docs", "deployment", "nginx-pulp-content.conf")


@pytest.fixture(scope="module")
def nginx(server):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is missing: dev/bench-tools.sh installs it"
    port, backend = free_port(), server.base.rsplit(":", 1)[1]
    with open(SNIPPET) as shipped:
        snippet = (shipped.read().replace("127.0.0.1:24816", f"127.0.0.1:{backend}")
                   .replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{port}"))
    state = os.path.join(TEST_ROOT, f"nginx-{port}")
    os.makedirs(os.path.join(state, "tmp"), exist_ok=True)
    conf = os.path.join(state, "nginx.conf")
    with open(conf, "w") as out:
        out.write(f"daemon off; pid {state}/pid; error_log {state}/error.log;\n"
                  "events {}\n"
                  f"http {{ access_log off; client_body_temp_path {state}/tmp; "
                  f"proxy_temp_path {state}/tmp;\n{snippet}\n}}\n")
    running = start([binary, "-c", conf], state, port=port)
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
