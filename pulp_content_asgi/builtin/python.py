"""pulp_python's port: the PyPI JSON API and the simple index on object storage, generated
here; pull-through (``?redirect=``) and everything else by the generic resolution.

What it replaces (pulp_python 3.36, ``pulp_python/app/models.py``,
``PythonDistribution.content_handler``):

``pypi/<name>/json``, ``pypi/<name>/<version>/json``
    PyPI's JSON API (https://docs.pypi.org/api/json/) for the distribution's content,
    built with pulp_python's ``python_content_to_json``, as aiohttp's ``json_response``
    (``application/json; charset=utf-8``) with ``X-PyPI-Last-Serial``. The plugin reads
    ``distribution.publication`` only and fails (``AttributeError``, a bare 500) on a
    distribution that serves a repository; here the content is the distribution's
    repository version, as pulp_python's own API view takes it (docs/differences.md).
``simple/``, ``simple/<name>/`` on object storage (pulp_python issue #413)
    the published ``simple/<canonical name>/index.html``, sent inline with
    ``Content-Type: text/html``: a redirect to the storage would break the page's relative
    links. On FileSystem storage the generic publication path serves these files.

Pull-through: ``PythonRemote.get_remote_artifact_url`` reads the ``redirect`` query
parameter of the request the generic path hands it, and
``PythonPackageContent.init_from_artifact_and_relative_path`` builds the package. What a
pull-through distribution streams for ``simple/…`` and ``pypi/<name>/json`` (no
publication has them) is typed here (:meth:`PythonHandler.plugin_headers`): pulpcore's
mime map knows no type for those names, and pip skips an index page that is not HTML.
pulp_python takes this port over by declaring
``content_asgi_handlers = {"python.PythonDistribution": "<its module>.PythonHandler"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath

from django.conf import settings
from pulpcore.app.models import Distribution, Publication, RepositoryVersion

from pulp_content_asgi.plugin import (
    DistributionHandler,
    Result,
    ServeArtifact,
    ServeBody,
    hooks,
)
from pulp_content_asgi.resolution import sources
from pulp_content_asgi.serving.artifacts import FILESYSTEM_STORAGE

#: What aiohttp's ``json_response`` sends.
JSON_TYPE = "application/json; charset=utf-8"
#: The simple pages' type (pulpcore's mime map for the published ``index.html``).
SIMPLE_TYPE = "text/html"


def json_api_request(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` for ``pypi/<name>/json`` or ``pypi/<name>/<version>/json``
    (a trailing slash allowed), else None."""
    parts = PurePath(path).parts
    if len(parts) in (3, 4) and parts[0] == "pypi" and parts[-1] == "json":
        return parts[1], parts[2] if len(parts) == 4 else None
    return None


def simple_index_path(path: str) -> str | None:
    """The published page for ``simple/...``: ``simple/<canonical name>/index.html`` for a
    project, ``simple/index.html`` for the root; None for other paths."""
    from packaging.utils import canonicalize_name

    parts = PurePath(path).parts
    if not parts or parts[0] != "simple":
        return None
    if len(parts) == 2:
        parts = ("simple", canonicalize_name(parts[1]))
    return f"{PurePath(*parts)}/index.html"


def simple_page(path: str) -> bool:
    """Whether ``path`` names a simple page itself (``simple/``, ``simple/<name>/``, with
    or without the slash), not a file of the published tree (``…/index.html``)."""
    parts = PurePath(path).parts
    return 1 <= len(parts) <= 2 and parts[0] == "simple"


class PythonHandler(DistributionHandler):
    """``PythonDistribution``: pulpcore's resolution order with pulp_python's documents."""

    def plugin_headers(self, distribution: Distribution, path: str) -> Mapping[str, str]:
        """The model's headers; a simple page is HTML and a JSON API path JSON wherever
        they come from (a pull-through distribution streams the upstream's: pulpcore's
        mime map has no type for them, ``application/octet-stream`` would be sent, and pip
        skips the page, PEP 503). The published pages are ``index.html`` files, typed by
        the map as ``text/html`` too."""
        headers = dict(super().plugin_headers(distribution, path))
        if simple_page(path):
            return {"Content-Type": SIMPLE_TYPE, **headers}
        if json_api_request(path) is not None:
            return {"Content-Type": JSON_TYPE, **headers}
        return headers

    def serve_content_handler(self, distribution: Distribution, path: str) -> Result | None:
        asked = json_api_request(path)
        if asked is not None:
            return self.serve_json_api(distribution, *asked)
        if distribution.pulp_domain.storage_class != FILESYSTEM_STORAGE:
            index = simple_index_path(path)
            if index is not None:
                return self.serve_simple_index(distribution, index)
        return None

    def serve_json_api(self, distribution: Distribution, name: str, version: str | None
                       ) -> Result | None:
        """The JSON API document of project ``name`` (one release when ``version``)."""
        from packaging.utils import canonicalize_name
        from pulp_python.app import utils
        from pulp_python.app.models import PythonPackageContent

        serving = sources.of(distribution).version
        if serving is None:
            return None
        packages = PythonPackageContent.objects.filter(
            pk__in=serving.content, name_normalized=canonicalize_name(name))
        domain = distribution.pulp_domain if settings.DOMAIN_ENABLED else None
        document = hooks.call(utils, "python_content_to_json", distribution.base_path,
                              packages, version=version, domain=domain)
        if not document:
            return None
        return ServeBody(json.dumps(document).encode(), headers={
            "Content-Type": JSON_TYPE, utils.PYPI_LAST_SERIAL: str(utils.PYPI_SERIAL_CONSTANT)})

    def serve_simple_index(self, distribution: Distribution, index: str) -> Result | None:
        """The published simple page, inline (never a redirect to the storage)."""
        publication = self.latest_publication(distribution)
        if publication is None:
            return None
        published = (publication.published_artifact
                     .select_related("content_artifact__artifact__pulp_domain")
                     .filter(relative_path=index).first())
        if published is None or published.content_artifact.artifact is None:
            return None
        return ServeArtifact(published.content_artifact.artifact, index,
                             {"Content-Type": SIMPLE_TYPE}, inline=True)

    @staticmethod
    def latest_publication(distribution: Distribution) -> Publication | None:
        """The distribution's publication, else the newest complete one of its
        repository's latest version (pulp_python's choice for the simple pages)."""
        if distribution.publication_id is not None:
            return distribution.publication
        if distribution.repository_id is None:
            return None
        latest: RepositoryVersion = distribution.repository.latest_version()
        return (Publication.objects.filter(repository_version=latest, complete=True)
                .order_by("-pulp_created").first())


HANDLERS = {"python.PythonDistribution": PythonHandler}
