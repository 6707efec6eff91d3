"""pulp_ansible's port: repository versions, which is all pulp_ansible serves here.

``AnsibleDistribution`` has no publications and overrides no model hook; the Galaxy API
(pulp-api) redirects collection downloads to plain content URLs, and on-demand
collections stream through ``CollectionRemote``'s downloader.
:class:`~pulp_content_asgi.plugin.RepositoryVersionHandler` serves the distribution's
repository version (or its repository's latest); tests/ports/test_generic_e2e.py checks that
the installed plugin still overrides none of the hooks this skips.
"""

HANDLERS = {
    "ansible.AnsibleDistribution": "pulp_content_asgi.plugin.handlers.RepositoryVersionHandler",
}
