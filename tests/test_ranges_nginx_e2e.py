"""Range headers answered as a real nginx answers them for a static file, on every path.

One file, three ways: nginx serving it from disk, our app serving it stored (published),
and our app streaming it from an upstream (the ``streamed`` policy, so every request is a
live download). For each Range header of the corpus the three answers must agree on the
status, ``Content-Range``, ``Content-Length`` and the body (a multipart body compared with
its boundary replaced: nginx counts boundaries up, ours are random). protocol/ranges.py
says which nginx rules these are; this test is where they were checked.
"""

from __future__ import annotations

import os
import re
import shutil

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import free_port, start, stop
from tests.helpers import TEST_ROOT, on_demand, unique_name, url

#: The stored file and the streamed one: different bytes, so the streamed one cannot be
#: served from the stored unit (pulp_file content is unique by path and digest: the same
#: bytes at the same path would reuse the stored unit, and nothing would stream).
BLOBS = {"stored": os.urandom(1000), "streamed": os.urandom(1000)}
BLOB = BLOBS["stored"]
#: Headers that nginx 1.22 answers 206, 206 multipart, 200 or 416 for a 1000-byte file.
CORPUS = [
    "bytes=0-9", "bytes=0-", "bytes=-100", "bytes=990-5000", "bytes=-5000", "bytes=999-",
    "bytes=00-01", "BYTES=0-1", "bytes= 0-1", "bytes=0 -1", "bytes=0 - 1",
    "bytes=0-1,5-6", "bytes=5-6,0-1", "bytes=0-1,1-2", "bytes=0-5,3-8",
    "bytes=0-9,20-29,40-49", "bytes=0-0,-1", "bytes=1-2,5-1", "bytes=2000-3000,0-1",
    "bytes=0-999,0-999", "bytes=-600,0-500", "bytes=0-,0-",
    "bytes=abc", "bytes=5-1", "bytes=-0", "bytes=-", "bytes=0-1,abc", "bytes=0-1,x",
    "bytes=0-1;", "bytes=-1-11", "bytes=0-1,,5-6", "bytes=0-1,", "bytes=,",
    "bytes=1000-", "bytes=1000-1100", "bytes=1000-,2000-", f"bytes=0-{2**63}",
    "bytes=", "items=0-1", "bytes = 0-1", "bytes 0-1",
]
BOUNDARY = re.compile(rb"(\r\n--)[0-9a-zA-Z]{20}")


@pytest.fixture(scope="module")
def paths(server, upstream):
    """The file stored and streamed by the app: URL and Last-Modified of each."""
    u = unique_name()
    repo = data.repository(f"ranges-{u}", {"f.bin": BLOB})
    stored = data.distribute(f"ranges-{u}", publication=data.publish(repo.latest_version()))
    streamed, prefix, _ = on_demand(upstream, {"f.bin": BLOBS["streamed"]}, policy="streamed")
    before = upstream.hits[prefix + "f.bin"]
    found = {}
    for kind, distribution in (("stored", stored), ("streamed", streamed)):
        target = url(server, distribution, "f.bin")
        found[kind] = (target, httpx.head(target).headers["last-modified"])
    # The streamed half is a live download every time, never a stored file.
    assert httpx.get(found["streamed"][0]).content == BLOBS["streamed"]
    assert upstream.hits[prefix + "f.bin"] >= before + 1
    return found


@pytest.fixture(scope="module")
def nginx(paths):
    """nginx serving the same bytes as ``stored.bin`` and ``streamed.bin``, each with the
    Last-Modified the app gives that path as its mtime, so If-Range dates mean the same."""
    from email.utils import parsedate_to_datetime

    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is missing: dev/bench-tools.sh installs it"
    port = free_port()
    state = os.path.join(TEST_ROOT, f"nginx-ranges-{port}")
    os.makedirs(os.path.join(state, "www"), exist_ok=True)
    os.makedirs(os.path.join(state, "tmp"), exist_ok=True)
    for kind, (_, modified) in paths.items():
        path = os.path.join(state, "www", f"{kind}.bin")
        with open(path, "wb") as out:
            out.write(BLOBS[kind])
        mtime = parsedate_to_datetime(modified).timestamp()
        os.utime(path, (mtime, mtime))
    conf = os.path.join(state, "nginx.conf")
    temp = " ".join(f"{kind}_temp_path {state}/tmp;" for kind in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w") as out:
        out.write(f"daemon off; pid {state}/pid; error_log {state}/error.log;\n"
                  f"events {{}}\nhttp {{ access_log off; {temp}\n"
                  "  types { application/octet-stream bin; }\n"
                  f"  server {{ listen 127.0.0.1:{port}; root {state}/www; }} }}\n")
    running = start([binary, "-c", conf], state, port=port, probe="/stored.bin")
    yield running
    stop(running)


def _answer(target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    response = httpx.get(target, headers=headers, timeout=60)
    return response.status_code, dict(response.headers), BOUNDARY.sub(rb"\1B", response.content)


def _agree(ours: tuple, nginx: tuple, live: bool) -> None:
    status, headers, body = ours
    assert status == nginx[0]
    assert headers.get("content-range") == nginx[1].get("content-range")
    if status == 416:
        return  # nginx's 416 is an HTML page, ours a text one (docs/differences.md)
    assert body == nginx[2]
    if not (live and status == 200):  # a whole live stream is chunked to HTTP/1.1
        assert headers["content-length"] == nginx[1]["content-length"]
    kind = headers["content-type"].split(";")[0]
    assert kind == nginx[1]["content-type"].split(";")[0]


@pytest.mark.parametrize("kind", ["stored", "streamed"])
@pytest.mark.parametrize("value", CORPUS)
def test_range_headers_are_answered_as_nginx_answers_them(nginx, paths, value, kind):
    expected = _answer(nginx.url(f"/{kind}.bin"), {"Range": value})
    _agree(_answer(paths[kind][0], {"Range": value}), expected, live=kind == "streamed")


@pytest.mark.parametrize(("value", "if_range"), [
    ("bytes=0-9", "{modified}"), ("bytes=0-9", "Mon, 01 Jan 2001 00:00:00 GMT"),
    ("bytes=0-9", '"not-the-etag"'), ("bytes=0-1,5-6", "{modified}"),
    ("bytes=0-1,5-6", "Mon, 01 Jan 2001 00:00:00 GMT"), ("bytes=abc", '"not-the-etag"'),
])
@pytest.mark.parametrize("kind", ["stored", "streamed"])
def test_if_range_is_answered_as_nginx_answers_it(nginx, paths, value, if_range, kind):
    """A validator that does not match sends the whole file (200), on the live path too
    (it used to answer 206 there)."""
    target, modified = paths[kind]
    headers = {"Range": value, "If-Range": if_range.format(modified=modified)}
    expected = _answer(nginx.url(f"/{kind}.bin"), headers)
    _agree(_answer(target, headers), expected, live=kind == "streamed")


def test_a_multipart_answer_is_nginx_s_layout(nginx, paths):
    """Part headers, blank lines and the closing boundary: byte for byte (boundary
    aside), and the boundary is in the Content-Type."""
    _, headers, body = _answer(paths["stored"][0], {"Range": "bytes=5-6,0-1"})
    assert re.fullmatch(r"multipart/byteranges; boundary=[0-9a-f]{20}",
                        headers["content-type"])
    assert body == (b"\r\n--B\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Range: bytes 5-6/1000\r\n\r\n" + BLOB[5:7]
                    + b"\r\n--B\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Range: bytes 0-1/1000\r\n\r\n" + BLOB[0:2] + b"\r\n--B--\r\n")
