"""The ASGI application called directly: what it sends for each server capability."""

from __future__ import annotations

import asyncio
import os

import pytest

from pulp_content_asgi.devtools import data
from tests.helpers import asgi_call, scope, unique_name

BODY = os.urandom(300 * 1024)  # above CONTENT_ASGI_INLINE_FILE_SIZE: not read inline


@pytest.fixture(scope="module")
def path():
    u = unique_name()
    repo = data.repository(f"inproc-{u}", {"big.bin": BODY, "tiny.txt": b"tiny"})
    data.distribute(f"inproc-{u}", publication=data.publish(repo.latest_version()))
    return f"/pulp/content/inproc-{u}/"


def call(path: str, method: str = "GET", headers: dict | None = None,
         extensions: dict | None = None) -> list[dict]:
    """The ASGI messages the app sends for one request."""
    from pulp_content_asgi.asgi import application

    return asyncio.run(asgi_call(application, scope(path, method, headers,
                                                    extensions=extensions)))


def test_whole_file_goes_through_pathsend_when_offered(path):
    sent = call(path + "big.bin", extensions={"http.response.pathsend": {}})
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(BODY)).encode()
    assert sent[1]["type"] == "http.response.pathsend"
    with open(sent[1]["path"], "rb") as stored:
        assert stored.read() == BODY


def test_without_pathsend_the_body_is_streamed_in_bounded_chunks(path):
    sent = call(path + "big.bin")
    chunks = [m["body"] for m in sent[1:] if m["type"] == "http.response.body"]
    assert b"".join(chunks) == BODY
    assert max(len(c) for c in chunks) <= 256 * 1024
    assert sent[-1].get("more_body") is False


def test_ranges_never_use_pathsend(path):
    sent = call(path + "big.bin", headers={"Range": "bytes=100-199999"},
                extensions={"http.response.pathsend": {}})
    assert sent[0]["status"] == 206
    assert b"".join(m.get("body", b"") for m in sent[1:]) == BODY[100:200000]


def test_small_files_are_sent_in_one_message(path):
    sent = call(path + "tiny.txt", extensions={"http.response.pathsend": {}})
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"tiny"


def test_head_sends_no_body_bytes(path):
    sent = call(path + "big.bin", method="HEAD", extensions={"http.response.pathsend": {}})
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(BODY)).encode()
    assert all(m.get("body", b"") == b"" for m in sent[1:])


def test_client_disconnect_stops_the_stream(path):
    """The client leaves after the first chunk: nothing more is read or sent."""
    from pulp_content_asgi.asgi import application

    def after_first_chunk(message: dict) -> bool:
        return message["type"] == "http.response.body"

    sent = asyncio.run(asyncio.wait_for(asgi_call(
        application, scope(path + "big.bin"), on_send=after_first_chunk), 120))
    bodies = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
    assert bodies == [BODY[:256 * 1024]]  # one CONTENT_ASGI_CHUNK_SIZE chunk, no more
