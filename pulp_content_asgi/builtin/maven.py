"""pulp_maven's port: the generic resolution, which is all pulp_maven needs, plus the
upstream's ``.sha1`` sidecar checked for what is fetched from the upstream.

``MavenDistribution`` serves repository versions (no publications). Its
``content_handler`` (pulp_maven 0.36) serves pre-generated directory pages and, when the
repository has a path index, indexed files; it returns aiohttp responses, which the
bridge converts (``pulp_content_asgi.bridge.hooks``). Pull-through comes from the model
hooks: ``MavenRemote.get_remote_artifact_content_type`` names no type for
``maven-metadata.xml``, its checksums and ``.meta/prefixes.txt`` (they are streamed from
upstream every time, never saved), and ``MavenArtifact`` for everything else, which is
saved and added to the repository by ``MavenRepository.pull_through_add_content``.
:class:`~pulp_content_asgi.plugin.DistributionHandler` runs all of these in pulpcore's
order; tests/ports/test_generic_e2e.py checks them against the installed plugin.

What it adds: a pull-through file has no expected digest (pulpcore makes its remote
artifact from the URL alone, and pulp_maven reads no checksum), so pulpcore-content saves
whatever the upstream sent. Maven repositories publish ``<file>.sha1`` beside every file
(Maven Central also ``.md5``, newer artifacts ``.sha256``/``.sha512``; ``.sha1`` is the one
every repository has, and what Maven itself checks by default): the file is saved only if
it matches (:class:`~pulp_content_asgi.plugin.upstream.SidecarCheck`; no sidecar, ``404``:
saved as before).

The experimental path index (a repository labelled ``path_index``, on an S3 domain):
``content_handler`` answers an indexed path with an ``IndexedArtifactResponse``
(``pulp_maven/app/path_index/http.py``), whose own ``prepare()`` decides, when aiohttp
sends it, between the bytes and a ``302`` to a signed S3 URL. The bridge would stream
every ``ArtifactResponse``; :meth:`MavenHandler.convert` makes the same decision here and
returns it as a :class:`~pulp_content_asgi.plugin.results.ServeArtifact`, so the one
responder sends it (docs/differences.md says what differs from pulp_maven's 302).
"""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import DistributionHandler, results
from pulp_content_asgi.plugin.upstream import SidecarCheck, UpstreamCheck

SHA1_SIDECAR = SidecarCheck("sha1")


def _indexed(distribution: Distribution, value: object) -> results.ServeArtifact | None:
    """An ``IndexedArtifactResponse`` as what its ``prepare()`` would send: an index page
    (``inline_html``) or a file on a domain that does not redirect, the bytes (inline); a
    file on an S3 domain with ``redirect_to_object_storage`` on, or larger than
    ``MAVEN_PATH_INDEX_REDIRECT_THRESHOLD`` bytes (None: no threshold), a redirect to the
    storage. The index entry's headers (``ETag``, ``Last-Modified``, ``Cache-Control``,
    the type) are kept; ``Content-Disposition`` names the last segment of the path, as
    pulp_maven's. None for any other value."""
    try:
        from pulp_maven.app.path_index.http import S3_BACKENDS, IndexedArtifactResponse
    except ImportError:  # a pulp_maven without the path index
        return None
    if not isinstance(value, IndexedArtifactResponse):
        return None
    converted = DistributionHandler.convert(distribution, value)
    assert isinstance(converted, results.ServeArtifact)  # the bridge's ArtifactResponse
    threshold = settings.MAVEN_PATH_INDEX_REDIRECT_THRESHOLD
    redirect = (not value.inline_html
                and value.domain.storage_class in S3_BACKENDS
                and (value.domain.redirect_to_object_storage
                     or (threshold is not None and value.entry.size > threshold)))
    return replace(converted, relative_path=value.path, inline=not redirect,
                   redirect=redirect)


class MavenHandler(DistributionHandler):
    """``MavenDistribution``: pulpcore's order; fetched files held to their ``.sha1``;
    path-index answers redirected as pulp_maven redirects them."""

    def upstream_check(self, distribution: Distribution, path: str) -> UpstreamCheck | None:
        return SHA1_SIDECAR

    @staticmethod
    def convert(distribution: Distribution, value: object) -> results.Result | None:
        """The bridge's conversion, but a path-index answer redirected or not as
        pulp_maven's ``IndexedArtifactResponse.prepare()`` decides (:func:`_indexed`)."""
        indexed = _indexed(distribution, value)
        if indexed is not None:
            return indexed
        return DistributionHandler.convert(distribution, value)


HANDLERS = {"maven.MavenDistribution": MavenHandler}
