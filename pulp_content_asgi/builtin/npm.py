"""pulp_npm's port: the package document ("packument") generated here, as JSON; tarballs
and pull-through by the generic resolution.

What it replaces (pulp_npm 0.10, ``pulp_npm/app/models.py``,
``NpmDistribution.content_handler``): for a request of a bare package name (``<name>``
or ``@scope/name``, no ``/-/<file>.tgz``) on a distribution with a repository, the
packument of that name in the distribution's repository version (or the repository's
latest)::

    {"name": ..., "versions": {"<v>": {"_id": "<name>@<v>", "dist": {"tarball": <url>}}},
     "dist-tags": {"latest": <newest stable semver, else newest semver>}}

with tarball URLs under ``CONTENT_ORIGIN``. Two differences (docs/differences.md): the
plugin's aiohttp ``Response(body=str)`` goes out as ``text/plain; charset=utf-8``, this
as ``application/json``; and when no version is a valid semver the plugin fails
(``max()`` of nothing, a 500) where this leaves ``latest`` out.

``NpmRemote.get_remote_artifact_content_type`` and ``Package.init_from_artifact_and_
relative_path`` keep serving pull-through (tarballs saved, upstream packuments streamed).
pulp_npm takes this port over by declaring
``content_asgi_handlers = {"npm.NpmDistribution": "<its module>.NpmHandler"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import DistributionHandler, Result, ServeBody, hooks

#: The packument's media type (RFC 8259 §11 defines no charset parameter: it is UTF-8).
PACKUMENT_TYPE = "application/json"


def tarball_prefix(distribution: Distribution) -> str:
    """``<CONTENT_ORIGIN>/<prefix>/[<domain>/]<base_path>/`` (pulp_npm's tarball base)."""
    from pulp_npm.app.utils import urlpath_sanitize

    parts = [settings.CONTENT_ORIGIN, settings.CONTENT_PATH_PREFIX]
    if settings.DOMAIN_ENABLED:
        parts.append(distribution.pulp_domain.name)
    parts.append(distribution.base_path)
    return f"{urlpath_sanitize(*parts)}/"


def latest(versions: Iterable[str]) -> str | None:
    """The newest stable semver among ``versions``, else the newest semver; None when
    none parses (npm's ``latest`` dist-tag)."""
    import semver

    parsed = {v: semver.Version.parse(v) for v in versions if semver.Version.is_valid(v)}
    stable = [v for v, p in parsed.items() if not p.prerelease]
    candidates = stable or list(parsed)
    return max(candidates, key=parsed.__getitem__) if candidates else None


def packument(name: str, packages: Iterable[Any], prefix: str) -> dict[str, Any]:
    """The package document of ``name`` for these ``Package`` rows."""
    versions: dict[str, Any] = {}
    for package in packages:
        filename = package.relative_path.rsplit("/", 1)[-1]
        versions[package.version] = {"_id": f"{package.name}@{package.version}",
                                     "dist": {"tarball": f"{prefix}{package.name}/-/{filename}"}}
    document: dict[str, Any] = {"name": name, "versions": versions}
    newest = latest(versions)
    document["dist-tags"] = {"latest": newest} if newest is not None else {}
    return document


class NpmHandler(DistributionHandler):
    """``NpmDistribution``: pulpcore's resolution order with the live packument."""

    def serve_content_handler(self, distribution: Distribution, path: str) -> Result | None:
        from pulp_npm.app import utils
        from pulp_npm.app.models import Package

        if distribution.repository_id is None:
            return None
        name, version = hooks.call(utils, "extract_package_info", path)
        if name is None or version is not None:
            return None  # not a package name, or a tarball (served as content)
        serving = distribution.repository_version or distribution.repository.latest_version()
        packages = list(Package.objects.filter(name=name, pk__in=serving.content)
                        .order_by("pulp_created"))
        if not packages:
            return None
        body = json.dumps(packument(name, packages, tarball_prefix(distribution)))
        return ServeBody(body.encode(), headers={"Content-Type": PACKUMENT_TYPE})


HANDLERS = {"npm.NpmDistribution": NpmHandler}
