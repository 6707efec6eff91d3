"""DOMAIN_ENABLED: the domain segment, unknown domains, per-domain listings; and a
non-default CONTENT_PATH_PREFIX, as Pulp's CI runs it."""

from __future__ import annotations

import httpx
import pytest
from pulpcore.app.models import Distribution, Domain
from pulpcore.app.util import set_domain

from pulp_content_asgi.devtools import data
from tests.helpers import content_app, raw_get, stop_server, unique_name


def published_in_domain(domain: str, repository: str, base_path: str, files: dict[str, bytes]
                        ) -> tuple[Domain, Distribution]:
    """A new filesystem domain ``domain`` holding ``repository`` (``files``) published at
    ``base_path``; the default domain is current again afterwards."""
    default = Domain.objects.get(name="default")
    made = data.filesystem_domain(domain)
    set_domain(made)
    try:
        repo = data.repository(repository, files)
        distribution = data.distribute(base_path, publication=data.publish(repo.latest_version()))
    finally:
        set_domain(default)
    return made, distribution


@pytest.fixture(scope="module")
def domain_world():
    u = unique_name()
    other, _ = published_in_domain(f"dom-{u}", f"in-domain-{u}", f"shared-{u}",
                                   {"d.txt": b"in another domain"})
    repo = data.repository(f"default-domain-{u}", {"d.txt": b"in the default domain"})
    data.distribute(f"shared-{u}", publication=data.publish(repo.latest_version()))
    return u, other


def test_same_base_path_in_two_domains(domain_server, domain_world):
    u, other = domain_world
    ours = httpx.get(domain_server.url(f"/pulp/content/{other.name}/shared-{u}/d.txt"))
    assert ours.status_code == 200 and ours.content == b"in another domain"
    default = httpx.get(domain_server.url(f"/pulp/content/default/shared-{u}/d.txt"))
    assert default.content == b"in the default domain"


def test_domain_root_listing_and_redirects(domain_server, domain_world):
    u, other = domain_world
    page = httpx.get(domain_server.url(f"/pulp/content/{other.name}/"))
    assert page.status_code == 200
    assert f"<h1>Index of /pulp/content/{other.name}/</h1>" in page.text
    assert f"shared-{u}/" in page.text
    bare = httpx.get(domain_server.url(f"/pulp/content/{other.name}"))
    assert bare.status_code == 301
    assert bare.headers["location"] == f"/pulp/content/{other.name}/"
    root = httpx.get(domain_server.url(f"/pulp/content/{other.name}/shared-{u}"))
    assert root.headers["location"] == f"/pulp/content/{other.name}/shared-{u}/"


def test_domain_redirects_keep_the_query_string(domain_server, domain_world):
    u, other = domain_world
    for path, location in [
            (f"/pulp/content/{other.name}", f"/pulp/content/{other.name}/"),
            (f"/pulp/content/{other.name}/shared-{u}",
             f"/pulp/content/{other.name}/shared-{u}/")]:
        status, headers, _ = raw_get(domain_server, f"{path}?x=1&y=%2F")
        assert (status, headers["location"]) == (301, f"{location}?x=1&y=%2F")


def test_unknown_domain_and_missing_domain_segment_are_404(domain_server, domain_world):
    u, _ = domain_world
    assert httpx.get(domain_server.url(f"/pulp/content/no-such-domain-{u}/x")).status_code == 404
    assert httpx.get(domain_server.url(f"/pulp/content/no-such-domain-{u}/")).status_code == 404
    assert httpx.get(domain_server.url("/pulp/content/")).status_code == 404


def test_custom_prefix_and_hidden_guarded(unique):
    from pulpcore.app.models import HeaderContentGuard

    repo = data.repository(f"prefix-{unique}", {"p.txt": b"p"})
    publication = data.publish(repo.latest_version())
    data.distribute(f"open-{unique}", publication=publication)
    guard = HeaderContentGuard.objects.create(name=f"g-{unique}", header_name="x", header_value="y")
    data.distribute(f"closed-{unique}", publication=publication, content_guard=guard)
    env = {"PULP_CONTENT_PATH_PREFIX": "/somewhere/else/",
           "PULP_HIDE_GUARDED_DISTRIBUTIONS": "true"}
    running = content_app(env=env, probe="/somewhere/else/")
    try:
        assert httpx.get(running.url(f"/somewhere/else/open-{unique}/p.txt")).content == b"p"
        assert httpx.get(running.url(f"/pulp/content/open-{unique}/p.txt")).status_code == 404
        listing = httpx.get(running.url("/somewhere/else/")).text
        assert "<h1>Index of /somewhere/else/</h1>" in listing
        assert f"open-{unique}/" in listing and f"closed-{unique}/" not in listing
        redirect = httpx.get(running.url("/somewhere/else"))
        assert redirect.headers["location"] == "/somewhere/else/"
    finally:
        stop_server(running)


def test_a_domain_renamed_then_its_distribution_deleted_is_seen_by_the_next_request(
        domain_server):
    """tests/test_remembered.py's ``TestDomains`` in a server started with DOMAIN_ENABLED:
    its one worker has the distribution in memory after three requests (learn, prepare,
    remembered; the statement count is only visible in process); the rename moves the
    URLs at the next request, the deletion ends the new one."""
    u = unique_name()
    domain, distribution = published_in_domain(f"ren-{u}", f"ren-{u}", f"ren-{u}",
                                               {"f.txt": b"renamed domain"})
    old = domain_server.url(f"/pulp/content/ren-{u}/ren-{u}/f.txt")
    new = domain_server.url(f"/pulp/content/moved-{u}/ren-{u}/f.txt")
    for _ in range(3):
        response = httpx.get(old)
        assert (response.status_code, response.content) == (200, b"renamed domain")
    domain.name = f"moved-{u}"
    domain.save()
    assert httpx.get(old).status_code == 404
    for _ in range(3):
        response = httpx.get(new)
        assert (response.status_code, response.content) == (200, b"renamed domain")
    distribution.delete()
    assert httpx.get(new).status_code == 404
