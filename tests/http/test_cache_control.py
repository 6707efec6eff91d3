"""``private`` merged into what a plugin or handler said (RFC 9111 §5.2.2.7), table-driven,
no database: what answers of guarded distributions say to shared caches."""

from __future__ import annotations

import pytest

from pulp_content_asgi.protocol.cache_control import private, private_headers
from pulp_content_asgi.serving.representation import Representation
from pulp_content_asgi.serving.responder import Request, respond
from pulp_content_asgi.serving.response import Response, text
from pulp_content_asgi.serving.response import private as private_response

EDGE = "public, max-age=0, must-revalidate"  # pulpcore's, on every file


@pytest.mark.parametrize(
    ("sent", "merged"),
    [
        (None, "private"),
        ("", "private"),
        (EDGE, "max-age=0, must-revalidate, private"),
        ("no-cache", "no-cache, private"),  # pulp_rpm's repomd.xml, .asc, .key
        ("max-age=300", "max-age=300, private"),  # pulp_maven's index entries
        ("no-store", "no-store"),  # object-storage redirects: no cache at all already
        ("public, no-store", "public, no-store"),
        ("NO-STORE", "NO-STORE"),
        ("private", "private"),  # nothing added twice
        ("max-age=0, private", "max-age=0, private"),
        ("Private, no-cache", "private, no-cache"),
        ("public, private", "private"),
        ("PUBLIC,max-age=60", "max-age=60, private"),
        # A private that names fields leaves the rest storable: widened to the response.
        ('private="Set-Cookie", max-age=60', "private, max-age=60"),
        ('private, private="Set-Cookie"', "private"),
        (" , no-cache ,, ", "no-cache, private"),
    ],
)
def test_private_merges_into_what_was_said(sent, merged):
    assert private(sent) == merged


def test_private_headers_keep_one_cache_control_whatever_its_spelling():
    assert private_headers({"Content-Type": "text/xml"}) == {
        "Content-Type": "text/xml", "Cache-Control": "private"}
    assert private_headers({"cache-control": "no-cache", "CACHE-CONTROL": "max-age=5",
                            "ETag": '"x"'}) == {
        "ETag": '"x"', "Cache-Control": "no-cache, max-age=5, private"}


@pytest.mark.parametrize(("request_headers", "status"), [
    ({}, 200), ({"If-None-Match": '"x"'}, 304), ({"Range": "bytes=0-1"}, 206)])
def test_every_status_of_a_guarded_answer_says_private(request_headers, status):
    """200, 304 and 206 of one representation, and a 404, all say ``private`` once it is
    merged into the response (what the app does for guarded distributions)."""
    rep = Representation(b"repomd", 6, {"Cache-Control": "no-cache"}, '"x"')
    answered = private_response(respond(rep, Request("GET", request_headers)))
    assert answered.status == status
    assert answered.headers["Cache-Control"] == "no-cache, private"
    assert private_response(text(404)).headers["Cache-Control"] == "private"
    kept = Response(302, {"Cache-Control": "no-store", "Location": "https://s3/x"})
    assert private_response(kept).headers == kept.headers
