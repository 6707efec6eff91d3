"""pulp_npm's port: the package document ("packument") generated here, as JSON; tarballs
and pull-through by the generic resolution.

What it replaces (pulp_npm 0.10, ``pulp_npm/app/models.py``,
``NpmDistribution.content_handler``): for a request of a bare package name (``<name>``
or ``@scope/name``, no ``/-/<file>.tgz``) on a distribution with a repository, the
packument of that name in the distribution's repository version (or the repository's
latest)::

    {"name": ..., "versions": {"<v>": {"_id": "<name>@<v>", "dist": {"tarball": <url>}}},
     "dist-tags": {"latest": <newest stable semver, else newest semver>}}

with tarball URLs under ``CONTENT_ORIGIN``. Three differences (docs/differences.md): the
plugin's aiohttp ``Response(body=str)`` goes out as ``text/plain; charset=utf-8``, this
as ``application/json``; when no version is a valid semver the plugin fails (``max()``
of nothing, a 500) where this leaves ``latest`` out; and each version entry also carries
``name``, ``version`` and, when Pulp knows the tarball's sha512, ``dist.integrity`` (the
npm registry format): npm 11 refuses pulp_npm's entries (``EINCOMPLETEMANIFEST``,
``missing version``), and with ``integrity`` it verifies the tarball it downloads
(clients/report.md).

``NpmRemote.get_remote_artifact_content_type`` and ``Package.init_from_artifact_and_
relative_path`` keep serving pull-through (tarballs saved, upstream packuments streamed,
as ``application/json`` too: ``NpmHandler.plugin_headers``).
pulp_npm takes this port over by declaring
``content_asgi_handlers = {"npm.NpmDistribution": "<its module>.NpmHandler"}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
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


def integrity(sha512_hex: str | None) -> str | None:
    """npm's Subresource Integrity string (``sha512-<base64>``) for a hex sha512."""
    if not sha512_hex:
        return None
    return "sha512-" + base64.b64encode(bytes.fromhex(sha512_hex)).decode("ascii")


def tarball_digests(packages: Iterable[Any]) -> dict[Any, str]:
    """Package pk → the sha512 (hex) of its tarball: the stored artifact's, else the one
    its remote artifacts promise (on-demand content). Two queries at most."""
    from pulpcore.app.models import ContentArtifact, RemoteArtifact

    pks = [p.pk for p in packages]
    found: dict[Any, str] = {}
    for content, sha512 in ContentArtifact.objects.filter(
            content__in=pks, artifact__isnull=False).values_list("content", "artifact__sha512"):
        if sha512:
            found[content] = sha512
    missing = [pk for pk in pks if pk not in found]
    if missing:
        for content, sha512 in RemoteArtifact.objects.filter(
                content_artifact__content__in=missing, sha512__isnull=False
        ).values_list("content_artifact__content", "sha512"):
            found.setdefault(content, sha512)
    return found


def packument(name: str, packages: Iterable[Any], prefix: str,
              digests: Mapping[Any, str] | None = None) -> dict[str, Any]:
    """The package document of ``name`` for these ``Package`` rows; ``digests`` maps a
    package's pk to its tarball's sha512 (hex), for ``dist.integrity``."""
    versions: dict[str, Any] = {}
    for package in packages:
        filename = package.relative_path.rsplit("/", 1)[-1]
        dist: dict[str, str] = {"tarball": f"{prefix}{package.name}/-/{filename}"}
        checked = integrity((digests or {}).get(package.pk))
        if checked is not None:
            dist["integrity"] = checked
        versions[package.version] = {"_id": f"{package.name}@{package.version}",
                                     "name": package.name, "version": package.version,
                                     "dist": dist}
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
        body = json.dumps(packument(name, packages, tarball_prefix(distribution),
                                    tarball_digests(packages)))
        return ServeBody(body.encode(), headers={"Content-Type": PACKUMENT_TYPE})

    def plugin_headers(self, distribution: Distribution, path: str) -> Mapping[str, str]:
        """The model's headers; a bare package name is a packument, JSON like the ones
        generated here: a pull-through distribution streams the upstream registry's, and
        pulpcore's mime map has no type for a name without an extension (it would be
        ``application/octet-stream``)."""
        from pulp_npm.app import utils

        headers = dict(super().plugin_headers(distribution, path))
        name, version = hooks.call(utils, "extract_package_info", path)
        if name is not None and version is None:
            return {"Content-Type": PACKUMENT_TYPE, **headers}
        return headers


HANDLERS = {"npm.NpmDistribution": NpmHandler}
