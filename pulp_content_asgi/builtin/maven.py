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
"""

from __future__ import annotations

from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import DistributionHandler
from pulp_content_asgi.plugin.upstream import SidecarCheck, UpstreamCheck

SHA1_SIDECAR = SidecarCheck("sha1")


class MavenHandler(DistributionHandler):
    """``MavenDistribution``: pulpcore's order; fetched files held to their ``.sha1``."""

    def upstream_check(self, distribution: Distribution, path: str) -> UpstreamCheck | None:
        return SHA1_SIDECAR


HANDLERS = {"maven.MavenDistribution": MavenHandler}
