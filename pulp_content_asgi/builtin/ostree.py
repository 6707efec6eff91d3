"""pulp_ostree's port: repository versions, which is all pulp_ostree serves here.

``OstreeDistribution`` has no publications and overrides no model hook: refs, objects,
``config`` and ``summary`` are content artifacts of the repository version.
:class:`~pulp_content_asgi.plugin.RepositoryVersionHandler` serves them;
tests/ports/test_generic_e2e.py checks that the installed plugin still overrides none of the
hooks this skips.
"""

HANDLERS = {
    "ostree.OstreeDistribution": "pulp_content_asgi.plugin.handlers.RepositoryVersionHandler",
}
