"""pulp_maven's port: the generic resolution, which is all pulp_maven needs.

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
"""

HANDLERS = {"maven.MavenDistribution": "pulp_content_asgi.plugin.handlers.DistributionHandler"}
