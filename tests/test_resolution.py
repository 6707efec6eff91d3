"""pulpcore's resolution order, as one table, against a real database.

Each row names a distribution set-up, a path below its base path and what must be
served: the order and the 301/404 rules of pulpcore-content's ``_match_and_stream``.
"""

from __future__ import annotations

import pytest
from pulp_file.app.models import FileDistribution

from pulp_content_asgi.devtools import data
from pulp_content_asgi.plugin import results
from pulp_content_asgi.plugin.handlers import NOT_POINTING
from tests.helpers import also_in, overlapping_distribution, resolve, unique_name, unit_at

FILES = {
    "a.txt": b"alpha",
    "docs/index.html": b"<p>docs</p>",
    "docs/page.txt": b"page",
    "tree/x/y.txt": b"y",
    "unpublished.txt": b"only in the version",
}


@pytest.fixture(scope="module")
def world():
    """Repositories, publications and distributions for every row of the table."""
    u = unique_name()
    repo = data.repository(f"res-{u}", FILES)
    v1 = repo.latest_version()
    published = {k: v for k, v in FILES.items() if k != "unpublished.txt"}
    pub1 = data.publish(v1)
    # Hide one file from the explicit publication: only pass-through reaches it.
    pub1.published_artifact.filter(relative_path="unpublished.txt").delete()
    pass_through = data.publish(v1, pass_through=True)
    v2 = data.add_files(repo, {"b.txt": b"bravo"})
    empty_repo = data.repository(f"res-empty-{u}")
    unpublished_repo = data.repository(f"res-unpub-{u}", {"c.txt": b"charlie"})
    names = {
        "pub": data.distribute(f"{u}/pub", publication=pub1),
        "pass": data.distribute(f"{u}/pass", publication=pass_through),
        "repo": data.distribute(f"{u}/repo", repository=repo),
        "version": data.distribute(f"{u}/version", repository_version=v1),
        "v2-unpublished": data.distribute(f"{u}/v2", repository_version=v2),
        "empty-repo": data.distribute(f"{u}/empty", repository=empty_repo),
        "unpublished-repo": data.distribute(f"{u}/unpub", repository=unpublished_repo),
        "nothing": data.distribute(f"{u}/nothing"),
    }
    return {"u": u, "repo": repo, "v1": v1, "v2": v2, "published": published,
            "pub1": pub1, **names}


def _base(world, name):
    return world[name].base_path


def served_path(result):
    assert isinstance(result, results.ServeArtifact), result
    return result.relative_path


@pytest.mark.parametrize(
    ("distro", "path", "kind", "detail"),
    [
        # Publication: files, index.html, listings, trailing slashes.
        ("pub", "a.txt", results.ServeArtifact, "a.txt"),
        ("pub", "docs", results.Redirect, "docs/"),
        ("pub", "docs/", results.ServeArtifact, "docs/index.html"),
        ("pub", "tree", results.Redirect, "tree/"),
        ("pub", "tree/", results.ServeListing, {"x/"}),
        ("pub", "tree/x/", results.ServeListing, {"y.txt"}),
        ("pub", "", results.ServeListing, {"a.txt", "docs/", "tree/"}),
        ("pub", "unpublished.txt", results.NotFound, "Not Found"),
        ("pub", "missing.txt", results.NotFound, "Not Found"),
        # Pass-through publication: the version's content is served and listed.
        ("pass", "unpublished.txt", results.ServeArtifact, "unpublished.txt"),
        ("pass", "", results.ServeListing, {"a.txt", "docs/", "tree/", "unpublished.txt"}),
        # Repository: its latest complete publication (not the newer unpublished version).
        ("repo", "a.txt", results.ServeArtifact, "a.txt"),
        ("repo", "b.txt", results.NotFound, "Not Found"),
        # Repository version with a publication: served from that publication.
        ("version", "docs/page.txt", results.ServeArtifact, "docs/page.txt"),
        # SERVE_FROM_PUBLICATION: no publication means 404, even at the root.
        ("v2-unpublished", "", results.NotFound, "Not Found"),
        ("v2-unpublished", "b.txt", results.NotFound, "Not Found"),
        ("empty-repo", "", results.NotFound, "Not Found"),
        ("unpublished-repo", "c.txt", results.NotFound, "Not Found"),
        # Nothing to serve at all.
        ("nothing", "", results.NotFound, NOT_POINTING),
        ("nothing", "a.txt", results.NotFound, NOT_POINTING),
    ],
)
def test_resolution_order(world, distro, path, kind, detail):
    result = resolve(f"{_base(world, distro)}/{path}")
    assert isinstance(result, kind), result
    if kind is results.ServeArtifact:
        assert result.relative_path == detail
    elif kind is results.Redirect:
        assert result.location.endswith(f"{_base(world, distro)}/{detail}")
        assert result.status == 301
    elif kind is results.ServeListing:
        assert result.listing.names == detail
    elif kind is results.NotFound:
        assert result.reason == detail


def test_distribution_root_without_slash_redirects(world):
    result = resolve(_base(world, "pub"))
    assert isinstance(result, results.Redirect)
    assert result.location == f"/pulp/content/{_base(world, 'pub')}/"


def test_partial_base_path_lists_or_redirects(world):
    listing = resolve(f"{world['u']}/")
    assert isinstance(listing, results.ServeListing)
    assert {"pub/", "pass/", "repo/", "version/", "nothing/"} <= listing.listing.names
    assert listing.listing.title == f"{world['u']}/"
    redirect = resolve(world["u"])
    assert isinstance(redirect, results.Redirect)
    assert redirect.location == f"/pulp/content/{world['u']}/"


def test_unknown_path_is_404(world):
    assert isinstance(resolve(f"{world['u']}-nope/x"), results.NotFound)


def test_repository_follows_new_publications(unique):
    """Its own repository: publishing into the shared world would change other rows."""
    repo = data.repository(f"res-follow-{unique}", {"a.txt": b"alpha"})
    data.publish(repo.latest_version())
    base = data.distribute(f"res-follow-{unique}", repository=repo).base_path
    assert isinstance(resolve(f"{base}/b.txt"), results.NotFound)
    data.publish(data.add_files(repo, {"b.txt": b"bravo"}))
    assert served_path(resolve(f"{base}/b.txt")) == "b.txt"


def test_listing_dates_and_sizes_come_from_repository_membership(world):
    """A file's date is when its content joined the repository (RepositoryContent), a
    directory's the newest of its files'; not when it was published."""
    result = resolve(f"{_base(world, 'pub')}/")
    listing = result.listing
    assert listing.sizes["a.txt"] == len(FILES["a.txt"])
    assert "docs/" not in listing.sizes
    joined = {path: created for path, created in world["v1"]._content_relationships()
              .values_list("content__contentartifact__relative_path", "pulp_created")}
    assert listing.dates["a.txt"] == joined["a.txt"]
    assert listing.dates["docs/"] == max(joined["docs/index.html"], joined["docs/page.txt"])
    published = world["pub1"].published_artifact.get(relative_path="a.txt").pulp_created
    assert listing.dates["a.txt"] < published


def test_served_artifact_carries_headers_and_last_modified(world):
    result = resolve(f"{_base(world, 'pub')}/a.txt")
    assert result.headers["Content-Type"] == "text/plain"
    assert result.headers["Cache-Control"] == "public, max-age=0, must-revalidate"
    assert result.last_modified is not None
    assert result.artifact.size == len(FILES["a.txt"])


class TestRepositoryVersionServing:
    """Types with SERVE_FROM_PUBLICATION = False serve repository versions directly."""

    @pytest.fixture(autouse=True)
    def version_serving(self, monkeypatch):
        monkeypatch.setattr(FileDistribution, "SERVE_FROM_PUBLICATION", False)

    def test_latest_version_of_repository(self, world):
        assert served_path(resolve(f"{_base(world, 'repo')}/b.txt")) == "b.txt"

    def test_index_html_is_served_without_redirect(self, world):
        assert served_path(resolve(f"{_base(world, 'v2-unpublished')}/docs")) == "docs/index.html"

    def test_listing_and_redirect(self, world):
        base = _base(world, "v2-unpublished")
        assert isinstance(resolve(f"{base}/tree"), results.Redirect)
        assert resolve(f"{base}/").listing.names == {"a.txt", "b.txt", "docs/", "tree/",
                                                      "unpublished.txt"}

    def test_publication_wins_when_set_explicitly(self, world):
        assert isinstance(resolve(f"{_base(world, 'pub')}/unpublished.txt"), results.NotFound)


@pytest.fixture(scope="module", params=["shorter first", "longer first"])
def overlap(request):
    """``p7`` (``parent.txt`` and its own ``c/x.txt``) and ``p7/c`` (its ``x.txt``), as an
    upgraded installation can hold them, created in either order: the longest base path
    must win whichever row is older (a rule "the newest row wins" fails one order, "the
    oldest wins" the other). Returned as (shorter, longer)."""
    u = unique_name()
    parent = data.repository(f"res-p7-{u}", {"parent.txt": b"parent",
                                             "c/x.txt": b"the parent's c/x.txt"})
    child = data.repository(f"res-p7c-{u}", {"x.txt": b"the child's x.txt"})
    make = {"shorter": (f"p7-{u}", parent), "longer": (f"p7-{u}/c", child)}
    order = ("shorter", "longer") if request.param == "shorter first" else ("longer", "shorter")
    made = {}
    for n, name in enumerate(order):
        base_path, repo = make[name]
        create = data.distribute if n == 0 else overlapping_distribution
        made[name] = create(base_path, publication=data.publish(repo.latest_version()))
    return made["shorter"], made["longer"]


def test_overlapping_base_paths_the_longest_wins(overlap):
    """pulpcore-content answers 500; the older row used to win here (404, or its own
    c/x.txt: the wrong file). ``older``/``newer`` name the shorter/longer base path of
    the shorter-first order."""
    older, newer = overlap
    found = resolve(f"{newer.base_path}/x.txt")
    assert served_path(found) == "x.txt"
    assert found.artifact.file.read() == b"the child's x.txt"
    assert resolve(f"{newer.base_path}/x.txt").artifact.sha256 == found.artifact.sha256
    assert served_path(resolve(f"{older.base_path}/parent.txt")) == "parent.txt"
    listing = resolve(f"{newer.base_path}/")
    assert isinstance(listing, results.ServeListing) and listing.listing.names == {"x.txt"}
    assert resolve(newer.base_path).location == f"/pulp/content/{newer.base_path}/"
    assert isinstance(resolve(f"{newer.base_path}/parent.txt"), results.NotFound)


def test_overlapping_base_paths_the_longest_ones_guard_decides(overlap):
    from pulpcore.app.models import HeaderContentGuard

    older, newer = overlap
    guard = HeaderContentGuard.objects.create(name=f"g-{unique_name()}",
                                              header_name="x-key", header_value="k")
    try:
        FileDistribution.objects.filter(pk=newer.pk).update(content_guard=guard)
        assert isinstance(resolve(f"{newer.base_path}/x.txt"), results.Denied)
        assert served_path(resolve(f"{older.base_path}/parent.txt")) == "parent.txt"
        FileDistribution.objects.filter(pk=newer.pk).update(content_guard=None)
        FileDistribution.objects.filter(pk=older.pk).update(content_guard=guard)
        assert served_path(resolve(f"{newer.base_path}/x.txt")) == "x.txt"
        assert isinstance(resolve(f"{older.base_path}/parent.txt"), results.Denied)
    finally:
        FileDistribution.objects.filter(pk__in=[older.pk, newer.pk]).update(content_guard=None)
        guard.delete()


@pytest.fixture(scope="module")
def twice():
    """A pass-through publication whose version holds two units at ``dup.txt`` (the second
    joined last) and two at ``early.txt`` (the second joined before the first). Versions
    are validated when published today, so the second units are put in afterwards."""
    from pulp_file.app.models import FileContent

    u = unique_name()
    repo = data.repository(f"res-dup-{u}", {"dup.txt": b"first unit", "early.txt": b"later",
                                            "dir/x.txt": b"x"})
    version = repo.latest_version()
    passed = data.distribute(f"res-dup-{u}", publication=data.publish(version,
                                                                      pass_through=True))
    first = FileContent.objects.get(pk__in=version.content, relative_path="early.txt")
    also_in(version, unit_at(FileContent, "dup.txt", b"second unit, added last"))
    also_in(version, unit_at(FileContent, "early.txt", b"added before"), added_before=first)
    return version, passed


@pytest.mark.parametrize(("path", "body"), [("dup.txt", b"second unit, added last"),
                                            ("early.txt", b"later")])
def test_two_units_at_one_path_the_one_added_last_is_served(twice, path, body):
    """pulpcore-content answers 500 for such a path, every time; a warning names both."""
    _, passed = twice
    found = resolve(f"{passed.base_path}/{path}")
    assert isinstance(found, results.ServeArtifact), found
    assert found.artifact.file.read() == body
    assert [served_path(resolve(f"{passed.base_path}/{path}")) for _ in range(3)] == [path] * 3


def test_two_units_at_one_path_are_named_in_one_warning(twice, caplog):
    """Every unit is named, once per process (not on every request)."""
    from pulp_file.app.models import FileContent

    from pulp_content_asgi.resolution import content

    version, passed = twice
    content._WARNED.discard((version.pk, "dup.txt"))
    with caplog.at_level("WARNING", logger="pulp_content_asgi.resolution.content"):
        for _ in range(3):
            resolve(f"{passed.base_path}/dup.txt")
    warnings = [r.getMessage() for r in caplog.records if "'dup.txt'" in r.getMessage()]
    assert len(warnings) == 1
    units = FileContent.objects.filter(pk__in=version.content, relative_path="dup.txt")
    assert len(units) == 2 and all(str(unit.pk) in warnings[0] for unit in units)
    assert "the one added last" in warnings[0]


def test_two_units_at_one_path_are_listed_once_with_the_served_size(twice):
    _, passed = twice
    listing = resolve(f"{passed.base_path}/").listing
    assert listing.names == {"dup.txt", "early.txt", "dir/"}
    assert listing.sizes["dup.txt"] == len(b"second unit, added last")
    assert listing.sizes["early.txt"] == len(b"later")


def test_two_units_at_one_path_in_a_served_repository_version(unique):
    """pulp_ostree's case: distributions that serve repository versions (no publication),
    two ``summary`` units after a re-sync."""
    from pulp_ostree.app.models import OstreeDistribution, OstreeRepository, OstreeSummary

    repo = OstreeRepository.objects.create(name=f"res-ostree-{unique}")
    older = unit_at(OstreeSummary, "summary", b"summary of the first sync")
    with repo.new_version() as version:
        version.add_content(OstreeSummary.objects.filter(pk=older.pk))
    also_in(version, unit_at(OstreeSummary, "summary", b"summary of the re-sync"))
    distribution = OstreeDistribution.objects.create(name=f"res-ostree-{unique}",
                                                     base_path=f"res-ostree-{unique}",
                                                     repository=repo)
    found = resolve(f"{distribution.base_path}/summary")
    assert isinstance(found, results.ServeArtifact), found
    assert found.artifact.file.read() == b"summary of the re-sync"
    assert resolve(f"{distribution.base_path}/").listing.names == {"summary"}


def test_two_units_at_one_path_in_a_superseded_pass_through_publication(unique):
    """The grace period of a superseded publication answers like the current one."""
    from django.test import override_settings
    from pulp_file.app.models import FileContent

    with override_settings(DISTRIBUTED_PUBLICATION_RETENTION_PERIOD=3600):
        repo = data.repository(f"res-grace-{unique}", {"gone.txt": b"first unit"})
        version = repo.latest_version()
        distribution = data.distribute(f"res-grace-{unique}", repository=repo)
        data.publish(version, pass_through=True)
        also_in(version, unit_at(FileContent, "gone.txt", b"second unit, added last"))
        data.publish(data.remove_files(repo, ["gone.txt"]), pass_through=True)
        found = resolve(f"{distribution.base_path}/gone.txt")
    assert isinstance(found, results.ServeArtifact), found
    assert found.artifact.file.read() == b"second unit, added last"
