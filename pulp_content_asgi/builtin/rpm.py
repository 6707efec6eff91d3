"""pulp_rpm's port: ``config.repo`` generated here, ``Cache-Control: no-cache`` on repository
metadata, and the generic resolution for everything else.

What it replaces (pulp_rpm 3.39, ``pulp_rpm/app/models/repository.py``, ``RpmDistribution``):

``content_handler``
    ``config.repo``, a yum/dnf repository file, when the distribution has
    ``generate_repo_config``; it returns an aiohttp ``Response`` (``text/plain;
    charset=utf-8``, no other headers) or ``Response(status=404, reason=...)`` when no URL
    can be built. :meth:`RpmHandler.serve_content_handler` builds the same bytes.
``content_headers_for``
    ``Cache-Control: no-cache`` for the basenames in ``settings.NOCACHE_LIST``
    (``repomd.xml``, ``repomd.xml.asc``, ``repomd.xml.key``), so yum never reuses stale
    metadata. :meth:`RpmHandler.plugin_headers` sets it; the headers go with the result,
    so stored files, on-demand streams and response-cache hits all carry it.
``content_handler_list_directory``
    ``config.repo`` in the listing of the distribution root. :meth:`RpmHandler.extra_names`.

The plugin's model hooks are not called at all; pulp_rpm's helpers are
(``RpmDistribution.get_repository_and_publication``, ``urlpath_sanitize``).
pulp_rpm takes this port over by declaring, on its PluginConfig,
``content_asgi_handlers = {"rpm.RpmDistribution": "<its module>.RpmHandler"}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from django.conf import settings
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import DistributionHandler, NotFound, Result, ServeBody, hooks

#: The file name pulp_rpm generates (``RpmDistribution.repository_config_file_name``).
CONFIG_REPO = "config.repo"
#: Characters dnf does not accept in a repository id; they are dropped from the name.
INVALID_REPO_ID_CHARS = re.compile(r"[^\w\-_.:]")
#: What aiohttp's ``Response(body=str)`` sends (pulp_rpm sets no type itself).
CONFIG_REPO_TYPE = "text/plain; charset=utf-8"
NO_ORIGIN = ("Cannot auto-generate config.repo when CONTENT_ORIGIN is not set and no baseurl "
             "specified.")
#: Options dnf would otherwise take from its own defaults: pulp_rpm writes them unless the
#: publication's ``repo_config`` has them.
DEFAULT_OPTIONS = (("repo_gpgcheck", "0"), ("gpgcheck", "0"), ("enabled", "1"))


def base_url(distribution: Distribution, origin: str) -> str:
    """``<origin>/<prefix>/[<domain>/]<base_path>/``, slashes merged (pulp_rpm's baseurl)."""
    from pulp_rpm.app.shared_utils import urlpath_sanitize

    parts = [origin, settings.CONTENT_PATH_PREFIX]
    if settings.DOMAIN_ENABLED:
        parts.append(distribution.pulp_domain.name)
    parts.append(distribution.base_path)
    return f"{urlpath_sanitize(*parts)}/"


def repo_file(distribution: Distribution, repository: object, publication: object,
              origin: str) -> str:
    """The ``.repo`` text: id (the name without characters dnf refuses), name, baseurl,
    the publication's ``repo_config`` options (``name`` and ``baseurl`` excluded),
    defaults for the options it leaves out, and ``gpgkey`` when the repository's
    metadata is signed."""
    from pulp_rpm.app.shared_utils import urlpath_sanitize

    url = base_url(distribution, origin)
    options = {k: v for k, v in publication.repo_config.items()  # type: ignore[attr-defined]
               if k not in ("name", "baseurl")}
    lines = [f"[{INVALID_REPO_ID_CHARS.sub('', distribution.name)}]",
             f"name={distribution.name}", f"baseurl={url}"]
    lines += [f"{key}={value}" for key, value in options.items()]
    lines += [f"{key}={value}" for key, value in DEFAULT_OPTIONS if key not in options]
    if repository.metadata_signing_service_id is not None:  # type: ignore[attr-defined]
        lines.append(f"gpgkey={urlpath_sanitize(url, '/repodata/repomd.xml.key')}")
    return "".join(f"{line}\n" for line in lines)


class RpmHandler(DistributionHandler):
    """``RpmDistribution``: pulpcore's resolution order with pulp_rpm's behaviour."""

    def serve_content_handler(self, distribution: Distribution, path: str) -> Result | None:
        """``config.repo`` when the distribution generates it and has a publication."""
        if path != CONFIG_REPO or not distribution.generate_repo_config:  # type: ignore[attr-defined]
            return None
        repository, publication = hooks.call(distribution, "get_repository_and_publication")
        if publication is None:
            return None
        origin = settings.CONTENT_ORIGIN or publication.repo_config.get("baseurl")
        if not origin:
            return NotFound(NO_ORIGIN)
        text = repo_file(distribution, repository, publication, origin)
        return ServeBody(text.encode(), headers={"Content-Type": CONFIG_REPO_TYPE})

    def plugin_headers(self, distribution: Distribution, path: str) -> Mapping[str, str]:
        """``no-cache`` for repository metadata (``settings.NOCACHE_LIST``)."""
        if os.path.basename(path) in settings.NOCACHE_LIST:
            return {"Cache-Control": "no-cache"}
        return {}

    def extra_names(self, distribution: Distribution, directory: str) -> frozenset[str]:
        """``config.repo`` at the root of a distribution that generates it."""
        if directory == "" and distribution.generate_repo_config:  # type: ignore[attr-defined]
            return frozenset({CONFIG_REPO})
        return frozenset()


HANDLERS = {"rpm.RpmDistribution": RpmHandler}
