"""Artifacts in S3 (moto's standalone server on loopback, signed with boto3): redirects
signed for the request's method, and proxying with the same HTTP semantics as local
files. moto was chosen because it is a pure-Python S3 implementation from PyPI that runs
on loopback in a second and speaks S3's signature v4, which is what django-storages and
boto3 use in production."""

from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pulpcore.app.models import Domain, HeaderContentGuard

from tests.helpers import (
    content_artifact,
    distribution_in,
    on_demand,
    s3_domain,
    s3_signed_for,
    unique_name,
    wait_for,
)

BODY = os.urandom(512 * 1024)


def test_redirect_to_a_url_signed_for_the_method(domain_server, s3):
    domain = s3_domain(s3, redirect=True)
    distribution = distribution_in(domain, {"pkg/file.rpm": BODY})
    url = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/pkg/file.rpm")
    response = httpx.get(url)
    assert response.status_code == 302
    assert response.headers["x-pulp-artifact-size"] == str(len(BODY))
    location = response.headers["location"]
    assert location.startswith(s3) and "X-Amz-Signature" in location
    assert "response-content-disposition=attachment" in location
    stored = httpx.get(location)
    assert stored.status_code == 200 and stored.content == BODY
    assert stored.headers["content-disposition"] == "attachment;filename=file.rpm"
    head = httpx.head(url)
    assert head.status_code == 302
    assert httpx.head(head.headers["location"]).status_code == 200
    # The method is part of what is signed (moto does not check it; S3 does).
    assert s3_signed_for(location, "GET") and not s3_signed_for(location, "HEAD")
    assert s3_signed_for(head.headers["location"], "HEAD")
    assert not s3_signed_for(head.headers["location"], "GET")
    # A client that holds the file is answered before any redirect, as by pulpcore.
    etag = f'"{hashlib.sha256(BODY).hexdigest()}"'
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(url, headers={"If-Match": '"other"'}).status_code == 412
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 302


def test_guarded_files_stay_private_through_the_redirect(domain_server, s3):
    """A guarded file on a redirecting domain: the 302 says ``no-store``, the 304 before
    it and the storage's own answer (the ``response-cache-control`` we sign) say
    ``private``, so neither a shared cache in front of us nor one in front of the storage
    keeps it for another client."""
    domain = s3_domain(s3, redirect=True)
    guard = HeaderContentGuard.objects.create(name=f"s3-{domain.name}", pulp_domain=domain,
                                              header_name="x-secret", header_value="yes")
    distribution = distribution_in(domain, {"pkg/file.rpm": BODY}, content_guard=guard)
    url = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/pkg/file.rpm")
    let_in = {"X-Secret": base64.b64encode(b"yes").decode()}
    private = "max-age=0, must-revalidate, private"
    redirected = httpx.get(url, headers=let_in)
    assert (redirected.status_code, redirected.headers["cache-control"]) == (302, "no-store")
    location = redirected.headers["location"]
    assert parse_qs(urlsplit(location).query)["response-cache-control"] == [private]
    stored = httpx.get(location)
    assert (stored.status_code, stored.content) == (200, BODY)
    assert stored.headers["cache-control"] == private
    etag = f'"{hashlib.sha256(BODY).hexdigest()}"'
    held = httpx.get(url, headers={**let_in, "If-None-Match": etag})
    assert (held.status_code, held.headers["cache-control"]) == (304, private)
    refused = httpx.get(url)
    assert (refused.status_code, refused.headers["cache-control"]) == (403, "private")


def test_proxying_keeps_file_semantics(domain_server, s3):
    domain = s3_domain(s3, redirect=False)
    distribution = distribution_in(domain, {"big.bin": BODY})
    url = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/big.bin")
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == BODY
    assert whole.headers["etag"] == f'"{hashlib.sha256(BODY).hexdigest()}"'
    ranged = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == BODY[100:200]
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(BODY)}"
    assert httpx.get(url, headers={"If-None-Match": whole.headers["etag"]}).status_code == 304
    assert httpx.get(url, headers={"Range": f"bytes={len(BODY)}-"}).status_code == 416


def test_each_domain_uses_its_own_bucket(domain_server, s3):
    first, second = s3_domain(s3, redirect=True), s3_domain(s3, redirect=True)
    a = distribution_in(first, {"same.txt": b"in the first bucket"})
    b = distribution_in(second, {"same.txt": b"in the second bucket"})
    for domain, distribution, expected in ((first, a, b"in the first bucket"),
                                           (second, b, b"in the second bucket")):
        url = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/same.txt")
        location = httpx.get(url).headers["location"]
        assert f"/{domain.storage_settings['bucket_name']}/" in location
        assert httpx.get(location).content == expected


@pytest.mark.parametrize("redirect", [True, False], ids=["redirected", "proxied"])
def test_container_blobs_on_object_storage(domain_server, s3, upstream, redirect):
    """pulp_container's blob route on S3: a signed redirect, or the bytes proxied with the
    registry headers."""
    from pulpcore.app.util import set_domain

    from tests.test_container_e2e import Registry, blob_digest

    domain = s3_domain(s3, redirect=redirect)
    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        registry = Registry(upstream, unique_name())
    finally:
        set_domain(default)
    digest = blob_digest(registry.stored)
    url = domain_server.url(
        f"/pulp/container/{domain.name}/{registry.distribution.base_path}/blobs/{digest}")
    answer = httpx.get(url)
    if redirect:
        assert answer.status_code == 302
        location = answer.headers["location"]
        assert location.startswith(s3) and s3_signed_for(location, "GET")
        answer = httpx.get(location)
    else:
        assert answer.headers["docker-content-digest"] == digest
        assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
    assert answer.status_code == 200 and answer.content == registry.stored


def on_demand_in(domain: Domain, upstream: object, files: dict[str, bytes]
                 ) -> tuple[object, str, object]:
    """``helpers.on_demand`` with everything made in ``domain`` (then back to default)."""
    from pulpcore.app.util import set_domain

    set_domain(domain)
    try:
        return on_demand(upstream, files)
    finally:
        set_domain(Domain.objects.get(name="default"))


def test_on_demand_content_is_saved_into_the_bucket(domain_server, s3, upstream):
    """The save puts the verified download into the domain's bucket with one upload
    (ondemand/placement.py): the next request is served from there, the upstream asked
    once."""
    from pulpcore.app.util import set_domain

    domain = s3_domain(s3, redirect=False)
    default = Domain.objects.get(name="default")
    blob = os.urandom(300_000)
    distribution, prefix, repo = on_demand_in(domain, upstream, {"s3.bin": blob})
    target = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/s3.bin")
    first = httpx.get(target, timeout=60)
    assert first.status_code == 200 and first.content == blob
    assert wait_for(lambda: content_artifact(repo, "s3.bin").artifact_id is not None)
    artifact = content_artifact(repo, "s3.bin").artifact
    assert artifact.pulp_domain_id == domain.pk
    set_domain(domain)
    try:
        with artifact.file.open("rb") as stored:
            assert stored.read() == blob
    finally:
        set_domain(default)
    again = httpx.get(target, timeout=60)
    assert again.status_code == 200 and again.content == blob
    assert again.headers["content-length"] == str(len(blob))
    assert upstream.hits[prefix + "s3.bin"] == 1


@pytest.fixture(scope="module")
def cached_domain_server(cache_settings):
    from tests.helpers import content_app, stop_server

    running = content_app(env={"PULP_DOMAIN_ENABLED": "true", **cache_settings},
                          probe="/pulp/content/default/")
    yield running
    stop_server(running)


def test_saved_on_demand_file_on_a_redirecting_domain_is_redirected_when_cached(
        cached_domain_server, s3, upstream):
    """Review (rev14): with the cache on, the save stores an ``ArtifactResponse`` entry
    (lookup._store_saved, entry_for without a response), and a hit on it serves the bytes
    (serve.on_thread): the domain's ``redirect_to_object_storage`` is skipped. Uncached,
    and on pulpcore-content (streams are not cached), the request after the save is the
    302."""
    domain = s3_domain(s3, redirect=True)
    blob = os.urandom(300_000)
    distribution, _prefix, repo = on_demand_in(domain, upstream, {"r.bin": blob})
    target = cached_domain_server.url(
        f"/pulp/content/{domain.name}/{distribution.base_path}/r.bin")
    first = httpx.get(target, timeout=60)
    assert first.status_code == 200 and first.content == blob
    assert wait_for(lambda: content_artifact(repo, "r.bin").artifact_id is not None)
    again = httpx.get(target, timeout=60)
    assert again.status_code == 302, (again.status_code, again.headers.get("x-pulp-cache"))
