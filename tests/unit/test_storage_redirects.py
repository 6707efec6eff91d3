"""Which stored artifacts are redirected to their storage, and what comes before and goes
into the redirect: on unsaved domains and artifacts (no database), with boto3's real,
local S3 presigning (no S3 server is asked)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from pulpcore.app.models import Artifact, Domain

from pulp_content_asgi.plugin import results
from pulp_content_asgi.serving import artifacts
from pulp_content_asgi.serving.prepare import prepare
from pulp_content_asgi.serving.responder import Request

S3 = "storages.backends.s3boto3.S3Boto3Storage"
AZURE = "storages.backends.azure_storage.AzureStorage"
FILESYSTEM = "pulpcore.app.models.storage.FileSystem"
SHA256 = "ab" * 32
ETAG = f'"{SHA256}"'
STORED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _artifact(storage_class: str, redirect: bool) -> Artifact:
    domain = Domain(name=f"d-{storage_class.rsplit('.', 1)[1]}-{redirect}",
                    storage_class=storage_class, redirect_to_object_storage=redirect,
                    storage_settings={"access_key": "test", "secret_key": "test",
                                      "bucket_name": "bucket",
                                      "endpoint_url": "http://127.0.0.1:9",
                                      "region_name": "us-east-1",
                                      "signature_version": "s3v4",
                                      "addressing_style": "path"},
                    pulp_last_updated=STORED)
    return Artifact(sha256=SHA256, size=1234, pulp_domain=domain, pulp_created=STORED,
                    file=f"artifact/{SHA256[:2]}/{SHA256[2:]}")


@pytest.mark.parametrize(("storage_class", "domain_redirects", "inline", "redirect",
                          "expected"), [
    (S3, True, False, False, True),
    (S3, False, False, False, False),
    (S3, False, False, True, True),  # the plugin's own rule (pulp_maven's threshold)
    (S3, True, True, False, False),  # inline documents stay here
    (AZURE, False, False, True, True),
    (FILESYSTEM, True, False, True, False),  # nothing to sign: served from disk
    ("example.UnknownStorage", False, False, True, False),  # cannot sign: served
])
def test_which_results_are_redirected(storage_class, domain_redirects, inline, redirect,
                                      expected):
    result = results.ServeArtifact(_artifact(storage_class, domain_redirects), "a/f.bin",
                                   inline=inline, redirect=redirect)
    assert artifacts.redirects(result) is expected


def test_inline_and_redirect_together_are_refused():
    with pytest.raises(ValueError, match="either inline or redirected"):
        results.ServeArtifact(_artifact(S3, True), "f.bin", inline=True, redirect=True)


def _served(headers: dict[str, str], request_headers: dict[str, str] | None = None,
            method: str = "GET", redirect: bool = True):
    result = results.ServeArtifact(_artifact(S3, False), "com/x/1.0/x-1.0.war", headers,
                                   redirect=redirect)
    return prepare(result, Request(method, request_headers or {}))


def test_preconditions_come_before_the_redirect():
    assert _served({}, {"If-None-Match": ETAG}).status == 304
    assert _served({}, {"If-None-Match": ETAG}, "HEAD").status == 304
    assert _served({}, {"If-Match": '"other"'}).status == 412
    assert _served({}, {"If-Modified-Since": "Fri, 02 Jan 2026 03:04:05 GMT"}).status == 304
    assert _served({}, {"If-None-Match": '"other"'}).status == 302


def test_the_storage_is_told_only_what_the_handler_said():
    """No type named: none is passed (the object's own stands), as pulpcore passes none."""
    cache_control = "public, max-age=86400, must-revalidate"
    response = _served({"Cache-Control": cache_control})
    assert response.status == 302
    query = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert query["response-content-disposition"] == "attachment;filename=x-1.0.war"
    assert query["response-cache-control"] == cache_control
    assert "response-content-type" not in query
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-PULP-ARTIFACT-SIZE"] == "1234"
    typed = _served({"content-type": "application/java-archive"})
    assert dict(parse_qsl(urlsplit(typed.headers["Location"]).query))[
        "response-content-type"] == "application/java-archive"


def test_a_cached_redirect_checks_the_preconditions_first():
    """The cache keeps a redirect with the file's validators (as pulpcore's entries carry
    them): a hit answers a client that holds the file as a miss does, and sends the
    302 without them."""
    from pulp_content_asgi.cache.entries import Entry
    from pulp_content_asgi.cache.serve import from_memory

    entry = Entry("Redirect", {"ETag": ETAG, "Last-Modified": "Fri, 02 Jan 2026 03:04:05 GMT",
                               "Cache-Control": "no-store", "X-PULP-ARTIFACT-SIZE": "1234"},
                  302, location="http://storage.example/bucket/f?sig=1")
    assert from_memory(entry, Request("GET", {"If-None-Match": ETAG})).status == 304
    assert from_memory(entry, Request("GET", {"If-Match": '"other"'})).status == 412
    hit = from_memory(entry, Request("GET", {"If-None-Match": '"other"'}))
    assert hit.status == 302
    assert hit.headers["Location"] == "http://storage.example/bucket/f?sig=1"
    assert {k.lower() for k in hit.headers} >= {"cache-control", "x-pulp-artifact-size"}
    assert not {k.lower() for k in hit.headers} & {"etag", "last-modified"}
    # An entry without validators (a plugin's own 302) is always the redirect.
    bare = Entry("Redirect", {}, 302, location="http://elsewhere.example/")
    assert from_memory(bare, Request("GET", {"If-None-Match": "*"})).status == 302


@pytest.mark.parametrize("cache_control", [
    "public, max-age=86400, must-revalidate",  # pulp_maven's path index entry
    "public, max-age=0, must-revalidate",  # a file of a distribution (handlers.py)
    None,  # a plugin's own result without one: neither 304 carries one
])
def test_a_304_for_a_redirect_is_the_same_from_the_cache(cache_control):
    """Review (rev14): the 304 a client holding the file gets must not depend on whether
    the redirect was cached. A miss's 304 carries the file's Cache-Control (pulp_maven's
    index entry: public, max-age=86400, must-revalidate, as pulp_maven's own 304); a hit's
    must too, not the 302's ``no-store`` (which tells the client's cache to drop the file)."""
    from pulp_content_asgi.cache.lookup import entry_for
    from pulp_content_asgi.cache.serve import from_memory

    headers = {} if cache_control is None else {"Cache-Control": cache_control}
    result = results.ServeArtifact(_artifact(S3, False), "com/x/1.0/x-1.0.war", headers,
                                   redirect=True)
    redirected = prepare(result, Request("GET", {}))
    assert redirected.status == 302
    assert redirected.headers["Cache-Control"] == "no-store"
    entry = entry_for(result, redirected)
    assert entry is not None
    conditional = {"If-None-Match": ETAG}
    missed = prepare(result, Request("GET", conditional))
    hit = from_memory(entry, Request("GET", conditional))
    assert missed.status == hit.status == 304
    assert missed.headers.get("Cache-Control") == cache_control
    assert {k.lower(): v for k, v in hit.headers.items() if k.lower() != "x-pulp-cache"} \
        == {k.lower(): v for k, v in missed.headers.items()}
    # The redirect itself, from the cache: no-store, and nothing kept only for the 304.
    again = from_memory(entry, Request("GET", {}))
    assert again.status == 302 and again.headers["Cache-Control"] == "no-store"
    assert not {k.lower() for k in again.headers} & {
        "etag", "last-modified", "x-content-asgi-file-cache-control"}
