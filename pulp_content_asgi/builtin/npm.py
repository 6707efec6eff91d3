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
``name``, ``version`` and ``dist.integrity`` (the npm registry format): the sha512 Pulp
knows for the tarball, else the one the registry's version document declares (a
packument naming such on-demand tarballs is then made on the event loop,
``ServeGenerated``, one request per such version, at most :data:`LOOKUPS`). npm 11
refuses pulp_npm's entries (``EINCOMPLETEMANIFEST``, ``missing version``), and with
``integrity`` it verifies the tarball it downloads (clients/report.md).

Tarballs fetched from the upstream (on-demand content, whose remote artifacts pulp_npm's
sync gives no digest, and pull-through) are held to the registry's version document,
``<registry>/<name>/<version>``, which declares ``dist.integrity`` (and ``dist.shasum``):
:class:`VersionDocumentCheck`, one small request before the first download (no document,
``404``: saved as before).

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
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import (
    DistributionHandler,
    Result,
    ServeBody,
    ServeGenerated,
    hooks,
)
from pulp_content_asgi.plugin.upstream import (
    Declared,
    Unreadable,
    UpstreamCheck,
    fetch_documents,
)

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


#: Subresource Integrity algorithms (https://www.w3.org/TR/SRI/) npm writes, and sha1 for
#: ``dist.shasum``-era ``integrity`` strings.
SRI_ALGORITHMS = ("sha512", "sha384", "sha256", "sha1")


def tarball_version(url: str, relative_path: str) -> tuple[str, str] | None:
    """``(registry prefix of the package, version)`` for a tarball ``url`` in a registry's
    layout (``<prefix>/<name>/-/<basename>-<version>.tgz``, the relative path being
    ``<name>/-/<file>``); None for anything else."""
    head, sep, file = url.rpartition("/-/")
    name = relative_path.split("/-/", 1)[0]
    basename = name.rsplit("/", 1)[-1]
    if not sep or not file.startswith(f"{basename}-") or not file.endswith(".tgz"):
        return None
    version = file[len(basename) + 1:-len(".tgz")]
    return (head, version) if version else None


def sri_digests(integrity: str) -> dict[str, str]:
    """``{"sha512": hex, ...}`` from an SRI string (``sha512-<base64> sha1-<base64>``);
    options (``?...``) are ignored, unknown algorithms left out."""
    found = {}
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        if algorithm in SRI_ALGORITHMS:
            try:
                found[algorithm] = base64.b64decode(value.split("?")[0], validate=True).hex()
            except ValueError as exc:
                raise Unreadable(f"integrity {token!r} is not base64") from exc
    return found


class VersionDocumentCheck(UpstreamCheck):
    """An npm tarball against its registry's version document: ``dist.integrity`` (all
    its hashes), else ``dist.shasum`` (sha1)."""

    def document(self, url: str, relative_path: str) -> str | None:
        found = tarball_version(url, relative_path)
        return None if found is None else f"{found[0]}/{found[1]}"

    def declared(self, url: str, relative_path: str, document: bytes | None) -> Declared:
        found = tarball_version(url, relative_path)
        if document is None or found is None:
            return Declared()
        try:
            manifest = json.loads(document)
            dist = manifest["dist"]
            version = manifest.get("version", found[1])
            integrity, shasum = dist.get("integrity"), dist.get("shasum")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise Unreadable(f"not an npm version document: {exc!r}") from exc
        name = relative_path.split("/-/", 1)[0]
        if version != found[1] or manifest.get("name", name) != name:
            raise Unreadable(f"the document is about {manifest.get('name')}@{version}, "
                             f"not {name}@{found[1]}")
        digests = sri_digests(integrity) if isinstance(integrity, str) else {}
        if not digests and isinstance(shasum, str):
            digests = {"sha1": shasum}
        return Declared(digests)


VERSION_DOCUMENT = VersionDocumentCheck()
#: Versions per packument whose integrity is asked of the upstream (the rest go without).
LOOKUPS = 16


@dataclass(frozen=True)
class Lookup:
    """A package whose tarball Pulp has no digest for, and where its registry declares one
    (decided on the ORM thread: the remote is loaded and cast)."""

    package: Any
    remote: Any
    url: str
    relative_path: str


def unverified(packages: Iterable[Any], digests: Mapping[Any, str]) -> list[Lookup]:
    """At most :data:`LOOKUPS` packages without a known sha512 whose tarball is on a
    remote that is not ``streamed`` (on-demand content of pulp_npm's sync), newest first."""
    from pulpcore.app.models import Remote, RemoteArtifact

    missing = [p.pk for p in packages if p.pk not in digests]
    if not missing:
        return []
    found: dict[Any, Lookup] = {}
    remotes: dict[Any, Any] = {}  # cast once per remote: a cast is a query
    for remote_artifact in (RemoteArtifact.objects.filter(
            content_artifact__content__in=missing).select_related(
            "remote", "content_artifact").order_by("-content_artifact__content__pulp_created")
            .iterator()):
        if len(found) >= LOOKUPS:
            break
        package = remote_artifact.content_artifact.content_id
        if package in found:
            continue
        remote = remotes.get(remote_artifact.remote_id)
        if remote is None:
            remote = remotes[remote_artifact.remote_id] = remote_artifact.remote.cast()
        if remote.policy != Remote.STREAMED:
            found[package] = Lookup(package, remote, remote_artifact.url,
                                    remote_artifact.content_artifact.relative_path)
    return list(found.values())


async def declared_sha512(lookups: list[Lookup]) -> dict[Any, str]:
    """Package pk → the sha512 (hex) its registry's version document declares, for those
    that declare one (one request per package; a failed one leaves it out)."""
    by_remote: dict[Any, list[tuple[Lookup, str]]] = {}
    for lookup in lookups:
        url = VERSION_DOCUMENT.document(lookup.url, lookup.relative_path)
        if url is not None:
            by_remote.setdefault(lookup.remote.pk, []).append((lookup, url))
    found: dict[Any, str] = {}
    for wanted in by_remote.values():
        bodies = await fetch_documents(wanted[0][0].remote, [url for _, url in wanted])
        for lookup, url in wanted:
            if url not in bodies:
                continue
            try:
                sha512 = VERSION_DOCUMENT.declared(lookup.url, lookup.relative_path,
                                                   bodies[url]).digests.get("sha512")
            except Unreadable:
                continue
            if sha512:
                found[lookup.package] = sha512
    return found


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
        prefix, digests = tarball_prefix(distribution), tarball_digests(packages)
        lookups = unverified(packages, digests)
        if not lookups:
            body = json.dumps(packument(name, packages, prefix, digests))
            return ServeBody(body.encode(), headers={"Content-Type": PACKUMENT_TYPE})

        async def produce() -> bytes:
            learned = await declared_sha512(lookups)
            return json.dumps(packument(name, packages, prefix,
                                        {**digests, **learned})).encode()

        return ServeGenerated(produce, headers={"Content-Type": PACKUMENT_TYPE})

    def upstream_check(self, distribution: Distribution, path: str) -> UpstreamCheck | None:
        return VERSION_DOCUMENT

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
