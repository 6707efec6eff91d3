"""Remembered distributions (resolution/remembered.py) never serve what the database no
longer says: every change the API can make to what a URL serves is seen by the very next
request, as pulpcore-content (which reads the database on every request) sees it.

Each test warms the worker's memory of a distribution with requests until one is served
in a single statement (so the memory is in use), commits a change as the API would (the
ORM in autocommit here), and checks the next request's answer (status and bytes). The
in-process app is the real one (tests/test_hot_path.py's ``request``).
"""

from __future__ import annotations

import base64

import pytest
from django.db import connection
from pulp_file.app.models import FileDistribution, FileRemote
from pulpcore.app.models import (
    ContentGuard,
    Distribution,
    Domain,
    HeaderContentGuard,
    Publication,
    Remote,
    Repository,
    RepositoryVersion,
)

from pulp_content_asgi import db
from pulp_content_asgi.devtools import data
from tests.helpers import overlapping_distribution, unique_name
from tests.test_hot_path import Counted
from tests.test_pull_through_e2e import file_plugin_pull_through  # noqa: F401 (TestRemote)

OLD, NEW = b"old bytes\n", b"new bytes, published later\n"
# pulpcore's header guard compares the Base64-decoded header with its value.
SESAME = {"x-secret": base64.b64encode(b"sesame").decode()}
CHANGED = {"x-secret": base64.b64encode(b"changed").decode()}


def get(path: str, headers: dict[str, str] | None = None,
        counted: Counted | None = None) -> tuple[int, bytes]:
    """Status and body of one GET through the in-process app."""
    import asyncio

    from pulp_content_asgi.asgi import application
    from tests.helpers import asgi_call, scope

    async def call() -> list[dict]:
        if counted is not None:
            counted.hop(asyncio.get_running_loop())
        return await asgi_call(application, scope(path, headers=headers))

    sent = asyncio.run(call())
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def statements(monkeypatch, path: str, headers: dict[str, str] | None = None
               ) -> tuple[int, bytes, int]:
    """Status, body and the number of SQL statements of one GET."""
    counted = Counted()
    with monkeypatch.context() as patch:
        patch.setattr(db, "_execute", counted.run(db._execute))
        status, body = get(path, headers, counted)
    return status, body, len(counted.statements)


def remembered(monkeypatch, path: str, headers: dict[str, str] | None = None
               ) -> tuple[int, bytes]:
    """Request ``path`` until it is answered from memory (one statement): the state every
    test starts from. The third request at the latest (learn, prepare, remembered)."""
    for _ in range(4):
        status, body, count = statements(monkeypatch, path, headers)
        if count == 1:
            return status, body
    raise AssertionError(f"{path} never served in one statement (last: {count})")


def published(u: str, body: bytes = OLD) -> tuple[FileDistribution, str]:
    repo = data.repository(f"mem-{u}", {"f.txt": body})
    distribution = data.distribute(f"mem-{u}", publication=data.publish(repo.latest_version()))
    return distribution, f"/pulp/content/mem-{u}/f.txt"


def test_a_new_publication_is_served_by_the_next_request(monkeypatch):
    distribution, path = published(unique_name())
    assert remembered(monkeypatch, path) == (200, OLD)
    repo = distribution.publication.repository_version.repository.cast()
    version = data.add_files(repo, {"f.txt": NEW, "g.txt": NEW})
    distribution.publication = data.publish(version)
    distribution.save()
    assert get(path) == (200, NEW)


def test_a_guard_added_is_enforced_by_the_next_request(monkeypatch):
    u = unique_name()
    distribution, path = published(u)
    assert remembered(monkeypatch, path) == (200, OLD)
    distribution.content_guard = HeaderContentGuard.objects.create(
        name=f"mem-{u}", header_name="x-secret", header_value="sesame")
    distribution.save()
    assert get(path)[0] == 403
    assert get(path, SESAME) == (200, OLD)


def test_a_guard_changed_in_its_detail_row_only_is_enforced_by_the_next_request(monkeypatch):
    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"mem-{u}", header_name="x-secret",
                                              header_value="sesame")
    distribution, path = published(u)
    distribution.content_guard = guard
    distribution.save()
    assert remembered(monkeypatch, path, SESAME) == (200, OLD)
    # The detail table alone (no save() of the master row): what a partial update does.
    HeaderContentGuard.objects.filter(pk=guard.pk).update(header_value="changed")
    assert get(path, SESAME)[0] == 403
    assert get(path, CHANGED) == (200, OLD)


def test_a_guard_removed_is_lifted_by_the_next_request(monkeypatch):
    u = unique_name()
    distribution, path = published(u)
    distribution.content_guard = HeaderContentGuard.objects.create(
        name=f"mem-{u}", header_name="x-secret", header_value="sesame")
    distribution.save()
    assert remembered(monkeypatch, path)[0] == 403
    distribution.content_guard = None
    distribution.save()
    assert get(path) == (200, OLD)


def test_a_base_path_changed_moves_the_files_at_the_next_request(monkeypatch):
    u = unique_name()
    distribution, path = published(u)
    assert remembered(monkeypatch, path) == (200, OLD)
    distribution.base_path = f"moved-{u}"
    distribution.save()
    assert get(path)[0] == 404
    assert get(f"/pulp/content/moved-{u}/f.txt") == (200, OLD)


def test_a_deleted_distribution_is_gone_at_the_next_request(monkeypatch):
    distribution, path = published(unique_name())
    assert remembered(monkeypatch, path) == (200, OLD)
    distribution.delete()
    assert get(path)[0] == 404


def test_a_distribution_created_at_a_longer_base_path_takes_over_at_the_next_request(
        monkeypatch):
    u = unique_name()
    parent = data.repository(f"mem-p-{u}", {"c/x.txt": OLD})
    data.distribute(f"mem-{u}", publication=data.publish(parent.latest_version()))
    path = f"/pulp/content/mem-{u}/c/x.txt"
    assert remembered(monkeypatch, path) == (200, OLD)
    child = data.repository(f"mem-c-{u}", {"x.txt": NEW})
    overlapping_distribution(f"mem-{u}/c", publication=data.publish(child.latest_version()))
    assert get(path) == (200, NEW)


class TestRepositoryServing:
    """Distributions that name a repository: what they serve is derived (its latest
    publication or version), so no row of theirs changes when it does."""

    def test_a_new_publication_of_the_repository_is_served_by_the_next_request(
            self, monkeypatch):
        u = unique_name()
        repo = data.repository(f"mem-{u}", {"f.txt": OLD})
        data.publish(repo.latest_version())
        newer = data.add_files(repo, {"f.txt": NEW})  # not published yet
        data.distribute(f"mem-{u}", repository=repo)
        path = f"/pulp/content/mem-{u}/f.txt"
        assert remembered(monkeypatch, path) == (200, OLD)
        data.publish(newer)  # writes no row the distribution loaded: only a new one
        assert get(path) == (200, NEW)

    def test_a_new_version_is_served_by_the_next_request(self, monkeypatch):
        monkeypatch.setattr(FileDistribution, "SERVE_FROM_PUBLICATION", False)
        u = unique_name()
        repo = data.repository(f"mem-{u}", {"f.txt": OLD})
        data.distribute(f"mem-{u}", repository=repo)
        path = f"/pulp/content/mem-{u}/f.txt"
        assert remembered(monkeypatch, path) == (200, OLD)
        data.add_files(repo, {"f.txt": NEW})
        assert get(path) == (200, NEW)

    def test_the_latest_publication_deleted_is_noticed_by_the_next_request(self,
                                                                            monkeypatch):
        u = unique_name()
        repo = data.repository(f"mem-{u}", {"f.txt": OLD})
        data.publish(repo.latest_version())
        newest = data.publish(data.add_files(repo, {"f.txt": NEW}))
        data.distribute(f"mem-{u}", repository=repo)
        path = f"/pulp/content/mem-{u}/f.txt"
        assert remembered(monkeypatch, path) == (200, NEW)
        newest.delete()  # the repository's row is not written: only the derived check sees it
        assert get(path) == (200, OLD)

    def test_a_repository_version_distribution_costs_one_statement(self, monkeypatch):
        monkeypatch.setattr(FileDistribution, "SERVE_FROM_PUBLICATION", False)
        u = unique_name()
        repo = data.repository(f"mem-{u}", {"f.txt": OLD})
        data.distribute(f"mem-{u}", repository_version=repo.latest_version())
        assert remembered(monkeypatch, f"/pulp/content/mem-{u}/f.txt") == (200, OLD)


@pytest.mark.usefixtures("file_plugin_pull_through")
class TestRemote:
    """A distribution's remote serves, by pull-through, the paths its publication does not
    hold (plugin/handlers.py ``serve_pull_through``, pulpcore's handler likewise): giving
    it one, pointing it at another upstream and taking it away change what such a path
    serves, and the next request serves the new answer. pulp_file is made to support
    pull-through as tests/test_pull_through_e2e.py makes it (its remote names the content
    type, so what is pulled is saved)."""

    MISSING = "pulled.bin"
    FIRST, SECOND = b"pulled from the first upstream\n", b"pulled from the second upstream\n"

    def world(self, upstream, backup_upstream, remote: bool
              ) -> tuple[FileDistribution, FileRemote | None, str, str]:
        """A published distribution (with a remote on the first upstream if ``remote``),
        its file's URL and the URL of a path only the upstreams hold, differently."""
        u = unique_name()
        distribution, path = published(u)
        upstream.files[f"{u}/{self.MISSING}"] = self.FIRST
        backup_upstream.files[f"{u}/{self.MISSING}"] = self.SECOND
        made = None
        if remote:
            made = FileRemote.objects.create(name=f"mem-{u}", url=upstream.url(f"{u}/"),
                                             policy="on_demand")
            distribution.remote = made
            distribution.save()
        return distribution, made, path, f"/pulp/content/mem-{u}/{self.MISSING}"

    def test_a_remote_given_is_pulled_through_by_the_next_request(
            self, monkeypatch, upstream, backup_upstream):
        distribution, _, path, missing = self.world(upstream, backup_upstream, remote=False)
        assert remembered(monkeypatch, path) == (200, OLD)
        assert get(missing)[0] == 404
        assert remembered(monkeypatch, path) == (200, OLD)
        u = distribution.base_path.removeprefix("mem-")
        distribution.remote = FileRemote.objects.create(
            name=f"mem-{u}", url=upstream.url(f"{u}/"), policy="on_demand")
        distribution.save()
        assert get(missing) == (200, self.FIRST)

    def test_a_remote_pointed_at_another_upstream_pulls_from_it_at_the_next_request(
            self, monkeypatch, upstream, backup_upstream):
        _, remote, path, missing = self.world(upstream, backup_upstream, remote=True)
        assert remote is not None
        assert remembered(monkeypatch, path) == (200, OLD)
        # Pulled (and saved: a remote artifact of this remote at the first URL) before.
        assert get(missing) == (200, self.FIRST)
        assert remembered(monkeypatch, path) == (200, OLD)
        # As the API's update saves it (master and detail rows). Pull-through reads the
        # remote's detail row, with the master's columns, live (``remote.cast()``); the
        # memory's check of the remote row makes the next lookup a full one as well.
        remote.url = backup_upstream.url(remote.url.removeprefix(upstream.url("")))
        remote.save()
        assert get(missing) == (200, self.SECOND)

    def test_a_remote_taken_away_is_404_at_the_next_request(self, monkeypatch, upstream,
                                                            backup_upstream):
        distribution, _, path, missing = self.world(upstream, backup_upstream, remote=True)
        assert remembered(monkeypatch, path) == (200, OLD)
        assert get(missing) == (200, self.FIRST)
        assert remembered(monkeypatch, path) == (200, OLD)
        distribution.remote = None
        distribution.save()
        assert get(missing)[0] == 404
        assert get(path) == (200, OLD)


def test_a_distribution_hidden_leaves_the_listings_at_the_next_request_and_keeps_serving(
        monkeypatch):
    """``hidden`` only keeps a distribution out of the listings of distributions
    (pulpcore/content/handler.py ``DistroListings``: its one use of the field; here
    resolution/distributions.py ``listing``); its files, and its own directory listing,
    are served as before."""
    u = unique_name()
    repo = data.repository(f"mem-{u}", {"f.txt": OLD})
    publication = data.publish(repo.latest_version())
    distribution = data.distribute(f"mem-{u}/shown", publication=publication)
    data.distribute(f"mem-{u}/other", publication=publication)
    path, listing = f"/pulp/content/mem-{u}/shown/f.txt", f"/pulp/content/mem-{u}/"
    assert remembered(monkeypatch, path) == (200, OLD)
    status, page = get(listing)
    assert status == 200 and b">shown/<" in page and b">other/<" in page
    assert remembered(monkeypatch, path) == (200, OLD)
    distribution.hidden = True
    distribution.save()
    status, page = get(listing)
    assert status == 200 and b">shown/<" not in page and b">other/<" in page
    assert get(path) == (200, OLD)
    status, own = get(f"/pulp/content/mem-{u}/shown/")
    assert status == 200 and b">f.txt<" in own
    assert remembered(monkeypatch, path) == (200, OLD)


class TestDomains:
    """DOMAIN_ENABLED: URLs name the domain (``/pulp/content/<domain>/<base path>/…``)
    and the memory is keyed by the domain's name (remembered.py ``_key``). The in-process
    app with domains on (as ``PULP_DOMAIN_ENABLED=true`` makes it at start-up; the
    statement count needs the app in this process)."""

    @pytest.fixture(autouse=True)
    def _domains_on(self, monkeypatch):
        from django.test import override_settings

        from pulp_content_asgi.asgi import application
        from pulp_content_asgi.entry.app import ContentApp

        assert isinstance(application, ContentApp)  # no deployment middleware here
        monkeypatch.setattr(application, "domains", True)
        with override_settings(DOMAIN_ENABLED=True):
            yield

    @staticmethod
    def in_domain(u: str) -> tuple[Domain, FileDistribution, str]:
        """A domain with a published distribution; the URL of its file."""
        from pulpcore.app.util import set_domain

        domain = data.filesystem_domain(f"dom-{u}")
        set_domain(domain)
        try:
            repo = data.repository(f"mem-{u}", {"f.txt": OLD})
            distribution = data.distribute(f"mem-{u}",
                                           publication=data.publish(repo.latest_version()))
        finally:
            set_domain(Domain.objects.get(name="default"))
        return domain, distribution, f"/pulp/content/dom-{u}/mem-{u}/f.txt"

    def test_a_domain_renamed_moves_its_urls_at_the_next_request(self, monkeypatch):
        u = unique_name()
        domain, _, path = self.in_domain(u)
        assert remembered(monkeypatch, path) == (200, OLD)
        domain.name = f"renamed-{u}"
        domain.save()
        assert get(path)[0] == 404
        assert get(f"/pulp/content/renamed-{u}/mem-{u}/f.txt") == (200, OLD)

    def test_a_deleted_distribution_in_a_domain_is_gone_at_the_next_request(self,
                                                                             monkeypatch):
        _, distribution, path = self.in_domain(unique_name())
        assert remembered(monkeypatch, path) == (200, OLD)
        distribution.delete()
        assert get(path)[0] == 404

    def test_a_new_publication_in_a_domain_is_served_by_the_next_request(self, monkeypatch):
        from pulpcore.app.util import set_domain

        domain, distribution, path = self.in_domain(unique_name())
        assert remembered(monkeypatch, path) == (200, OLD)
        repo = distribution.publication.repository_version.repository.cast()
        set_domain(domain)
        try:
            publication = data.publish(data.add_files(repo, {"f.txt": NEW}))
        finally:
            set_domain(Domain.objects.get(name="default"))
        distribution.publication = publication
        distribution.save()
        assert get(path) == (200, NEW)


def _touch(table: str, pk: object) -> None:
    """Rewrite a row without changing a value (``UPDATE … SET pulp_id = pulp_id`` or the
    detail table's own primary key): a new row version, as any write makes."""
    with connection.cursor() as cursor:
        cursor.execute('SELECT a.attname FROM pg_index i JOIN pg_attribute a ON '
                       'a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) '
                       'WHERE i.indrelid = %s::regclass AND i.indisprimary', [table])
        (column,) = cursor.fetchone()
        cursor.execute(f'UPDATE "{table}" SET "{column}" = "{column}" WHERE "{column}" = %s',
                       [pk])
        assert cursor.rowcount == 1


@pytest.fixture(scope="module")
def world() -> dict:
    u = unique_name()
    repo = data.repository(f"mem-w-{u}", {"f.txt": OLD})
    guard = HeaderContentGuard.objects.create(name=f"mem-w-{u}", header_name="x-secret",
                                              header_value="sesame")
    remote = FileRemote.objects.create(name=f"mem-w-{u}", url="http://127.0.0.1:9/")
    distribution = data.distribute(f"mem-w-{u}", publication=data.publish(repo.latest_version()),
                                   content_guard=guard, remote=remote)
    return {"distribution": distribution, "guard": guard, "remote": remote,
            "path": f"/pulp/content/mem-w-{u}/f.txt"}


def _rows(world: dict) -> dict[str, tuple[str, object]]:
    distribution = world["distribution"]
    publication = Publication.objects.get(pk=distribution.publication_id)
    version = RepositoryVersion.objects.get(pk=publication.repository_version_id)
    return {
        "distribution": (Distribution._meta.db_table, distribution.pk),
        "distribution detail": (FileDistribution._meta.db_table, distribution.pk),
        "domain": (Domain._meta.db_table, distribution.pulp_domain_id),
        "guard": (ContentGuard._meta.db_table, world["guard"].pk),
        "guard detail": (HeaderContentGuard._meta.db_table, world["guard"].pk),
        "publication": (Publication._meta.db_table, publication.pk),
        "publication's version": (RepositoryVersion._meta.db_table, version.pk),
        "publication's repository": (Repository._meta.db_table, version.repository_id),
        "remote": (Remote._meta.db_table, world["remote"].pk),
    }


@pytest.mark.parametrize("row", ["distribution", "distribution detail", "domain", "guard",
                                 "guard detail", "publication", "publication's version",
                                 "publication's repository", "remote"])
def test_any_write_to_a_remembered_row_is_noticed_by_the_next_request(monkeypatch, world,
                                                                      row):
    """Every row the lookup loaded is checked, whatever the column written: the next
    request looks the distribution up again (more than one statement), then the one
    after it is remembered again."""
    headers = SESAME
    assert remembered(monkeypatch, world["path"], headers) == (200, OLD)
    _touch(*_rows(world)[row])
    status, body, count = statements(monkeypatch, world["path"], headers)
    assert (status, body) == (200, OLD)
    assert count > 1, f"a write to the {row} row went unnoticed"
    assert remembered(monkeypatch, world["path"], headers) == (200, OLD)


def test_a_write_elsewhere_keeps_the_memory(monkeypatch, world):
    """The check is per row: a write to another distribution does not cost this one."""
    headers = SESAME
    assert remembered(monkeypatch, world["path"], headers) == (200, OLD)
    other, _ = published(unique_name())
    FileDistribution.objects.filter(pk=other.pk).update(hidden=True)
    assert statements(monkeypatch, world["path"], headers) == (200, OLD, 1)



@pytest.mark.parametrize("bytewise", [True, False])
@pytest.mark.parametrize("path", ["", "d/", "f.txt", "a/100%_x", "dir/sub\\/", "é/ü.txt"])
@pytest.mark.parametrize("kind", ["published", "version"])
def test_a_compiled_probe_is_the_query_django_compiles_for_the_path(monkeypatch, world,
                                                                     bytewise, path, kind):
    """The probe is compiled once per path shape with a stand-in for the path
    (remembered._template); with the request's path put in, it is exactly what Django
    compiles for that path, under either collation branch (content._under)."""
    from pulp_content_asgi.resolution import content, remembered

    monkeypatch.setattr(content, "_bytewise_collation", lambda: bytewise)
    monkeypatch.setattr(remembered, "_templates", {})
    publication = Publication.objects.get(pk=world["distribution"].publication_id)
    source = publication if kind == "published" else publication.repository_version
    shape, stem = remembered._shape(path)
    template = remembered._template(kind, source, shape, True)
    direct = (content.published_query(source, path) if kind == "published"
              else content.version_query(source, path, with_index=True))
    sql, params = direct.query.get_compiler(connection=connection).as_sql(
        with_col_aliases=True)
    assert (template.sql, remembered._fill(template.params, stem)) == (sql, list(params))
