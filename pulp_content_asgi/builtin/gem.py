"""pulp_gem's port: the generic resolution, which is all pulp_gem needs.

``GemDistribution`` serves publications (``SERVE_FROM_PUBLICATION``) and overrides no
model hook. Pull-through comes from ``GemRemote.get_remote_artifact_content_type``
(``GemContent`` for ``gems/*.gem``; specs and the compact index are streamed) and
``GemContent.init_from_artifact_and_relative_path``, which reads the gem and writes a
temporary file into the working directory: the app changes into ``WORKING_DIRECTORY`` at
start-up, as pulpcore-content does, so that file lands there.
:class:`~pulp_content_asgi.plugin.DistributionHandler` serves publications, their grace
period and pull-through in pulpcore's order; tests/ports/test_generic_e2e.py checks it against
the installed plugin.
"""

HANDLERS = {"gem.GemDistribution": "pulp_content_asgi.plugin.handlers.DistributionHandler"}
