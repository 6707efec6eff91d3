"""Convenience handlers plugins reuse: published content, repository versions, and the
generic distribution handler that chains them in pulpcore's resolution order.

Handlers run on an ORM thread (one hop per request) and return typed results. The order
in :meth:`DistributionHandler.serve` is the behaviour contract of pulpcore-content's
``Handler._match_and_stream``:

1. ``Distribution.content_handler(path)``: a returned ``ContentArtifact`` is served, a
   returned (or raised) aiohttp response is converted, None continues.
2. The source: the checkpoint publication for ``<timestamp>/...`` on checkpoint
   distributions, else ``get_repository_publication_and_version()`` (publication >
   repository version > repository; publications only when ``SERVE_FROM_PUBLICATION``).
3. A publication: ``dir/index.html`` (301 without the slash), a directory listing (301
   without the slash), the published artifact, then pass-through content.
4. With ``SERVE_FROM_PUBLICATION``: files of superseded publications still in their grace
   period (``Distribution.get_fallback_ca``'s walk, :func:`content.grace_period_fallback`).
5. A repository version when there is no publication and the type does not require one:
   ``dir/index.html``, a listing, the content artifact.
6. Pull-through from ``distribution.remote``: a known remote artifact for the URL, or a
   new one streamed (and saved when the remote names a content type).
7. 404; "Distribution is not pointing to ..." when it has no source at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pulpcore.app import mime_types
from pulpcore.app.models import (
    ContentArtifact,
    Distribution,
    Publication,
    Remote,
    RemoteArtifact,
    Repository,
    RepositoryVersion,
)

from pulp_content_asgi.plugin import hooks, results, upstream
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.protocol import cache_control
from pulp_content_asgi.resolution import checkpoints, content, sources
from pulp_content_asgi.resolution.distributions import content_prefix

#: Shared caches (CDNs) must revalidate with Pulp before reusing a response (pulpcore's).
#: Guarded distributions' files say ``max-age=0, must-revalidate, private`` instead
#: (:mod:`pulp_content_asgi.protocol.cache_control`, docs/differences.md).
EDGE_CACHE_CONTROL = "public, max-age=0, must-revalidate"

NOT_POINTING = ("Distribution is not pointing to a publication, repository, repository "
                "version, or remote.")

_RESULT_TYPES = (results.ServeArtifact, results.ServeLocalFile, results.ServeRemote,
                 results.ServeListing, results.ServeBody, results.ServeGenerated,
                 results.Redirect,
                 results.NotFound, results.Denied, results.Failure)


def _directory(path: str) -> str:
    return path if path == "" or path.endswith("/") else f"{path}/"


def _is_directory_request(path: str) -> bool:
    return path == "" or path.endswith("/")


def _add_slash(request: ContentRequest) -> results.Redirect:
    return results.Redirect(f"{request.path}/", keep_query=True)


class ContentHandler:
    """Serves the requests matched to one distribution type.

    ``serve`` is called on an ORM thread after the distribution was matched and its
    content guard permitted the request; ``path`` is relative to the base path, without
    a leading slash ("" for the distribution root, which always ends in a slash here).
    """

    def serve(self, request: ContentRequest, distribution: Distribution, path: str
              ) -> results.Result:
        raise NotImplementedError

    def headers_for(self, distribution: Distribution, path: str) -> dict[str, str]:
        """Content-Type from pulpcore's mime map, cache policy, plugin headers (which win);
        for a guarded distribution ``private`` is merged into the policy the plugin left
        (pulp_rpm's ``no-cache`` becomes ``no-cache, private``), so what is kept with the
        result says it too: response-cache entries, on-demand downloads and the
        ``response-cache-control`` an object-storage redirect signs. Every response of a
        guarded distribution is made private again where it leaves the app."""
        headers = {"Cache-Control": EDGE_CACHE_CONTROL}
        content_type = mime_types.get_type(path)
        if content_type:
            headers["Content-Type"] = content_type
        for name, value in self.plugin_headers(distribution, path).items():
            # The plugin's header replaces ours whatever its spelling.
            for ours in [k for k in headers if k.lower() == name.lower()]:
                del headers[ours]
            headers[name] = value
        if distribution.content_guard_id is not None:
            headers = cache_control.private_headers(headers)
        return headers

    def plugin_headers(self, distribution: Distribution, path: str) -> Mapping[str, str]:
        """The plugin's own headers for ``path`` (they replace ours): the model's
        ``content_headers_for`` hook; a port computes them itself instead."""
        return hooks.call(distribution, "content_headers_for", path)

    def upstream_check(self, distribution: Distribution, path: str
                       ) -> upstream.UpstreamCheck | None:
        """How to learn what the upstream declares about ``path``, which the app is about
        to fetch for this distribution (on-demand or pull-through content, not stored):
        a download that does not match is refused and nothing is saved
        (:mod:`pulp_content_asgi.plugin.upstream`). Called on the ORM thread for
        :class:`~.results.ServeRemote` results that carry no check of their own, never for
        stored content. None (the default): only the remote artifact's own digests."""
        return None

    def extra_names(self, distribution: Distribution, directory: str) -> frozenset[str]:
        """Names the plugin adds to the listing of ``directory`` ("" or ending in "/"):
        the model's ``content_handler_list_directory`` hook; a port lists them itself."""
        return frozenset(hooks.call(distribution, "content_handler_list_directory",
                                    directory))

    def serve_content_artifact(self, content_artifact: ContentArtifact,
                               headers: dict[str, str], version: RepositoryVersion | None,
                               last_modified: Any = None) -> results.Result:
        """Send a content artifact's file, or stream it from a remote if not stored; either
        way with the same Last-Modified (when the content joined ``version``)."""
        if last_modified is None and version is not None:
            if hasattr(content_artifact, "added_at"):  # annotated by a probe: no query
                last_modified = content_artifact.added_at or version.pulp_created
            else:
                last_modified = content.added_at(version, content_artifact)
        if content_artifact.artifact_id is None:
            return results.ServeRemote(content_artifact, headers, last_modified=last_modified)
        return results.ServeArtifact(content_artifact.artifact, content_artifact.relative_path,
                                     headers, last_modified)

    def listing(self, request: ContentRequest, distribution: Distribution, path: str,
                version: RepositoryVersion, publication: Publication | None,
                below: bool) -> results.Result | None:
        """A listing of ``path`` (301 to add the slash), or None if nothing is below it.

        ``below`` says whether a probe already saw entries under the directory; the
        distribution's ``content_handler_list_directory`` may add more.
        """
        directory = _directory(path)
        extra = self.extra_names(distribution, directory)
        if not below and not extra:
            return None
        if not _is_directory_request(path):
            return _add_slash(request)
        found = content.list_directory(directory, version, publication, title=request.path)
        return results.ServeListing(replace(found, names=found.names | extra))

    def exact(self, probe: content.Probe, distribution: Distribution, path: str
              ) -> ContentArtifact | None:
        """The probe's content artifact for ``path``. Several claiming it (pulp_ostree
        re-syncs leave two ``summary``) gives the one added to the repository last, and a
        warning naming them all (:func:`content.probe_version`); pulpcore-content answers
        500 for such a path."""
        return probe.exact


class PublicationHandler(ContentHandler):
    """Serves a distribution's publication: index.html, listings, published and
    pass-through files, and superseded publications during their grace period."""

    def serve(self, request: ContentRequest, distribution: Distribution, path: str
              ) -> results.Result:
        publication = sources.of(distribution).publication
        found = None
        if publication is not None:
            found = self.serve_publication(request, distribution, publication, path)
        return found or self.serve_grace_period(distribution, path) or results.NotFound()

    def serve_publication(self, request: ContentRequest, distribution: Distribution,
                          publication: Publication, path: str) -> results.Result | None:
        version = publication.repository_version
        published = content.probe_published(publication, path)
        if published.index is not None:
            if not _is_directory_request(path):
                return _add_slash(request)
            index = f"{_directory(path)}index.html"
            return self.serve_content_artifact(published.index, self.headers_for(
                distribution, index), version, last_modified=publication.pulp_created)
        passed = (content.probe_version(version, path, with_index=False)
                  if publication.pass_through else None)
        below = published.below or bool(passed and passed.below)
        listed = self.listing(request, distribution, path, version, publication, below)
        if listed is not None:
            return listed
        found = published.exact
        if found is None and passed is not None:
            found = self.exact(passed, distribution, path)
        if found is None:
            return None
        return self.serve_content_artifact(found, self.headers_for(distribution, path), version)

    def serve_grace_period(self, distribution: Distribution, path: str
                           ) -> results.Result | None:
        if not distribution.SERVE_FROM_PUBLICATION:
            return None
        if type(distribution).get_fallback_ca is Distribution.get_fallback_ca:
            # pulpcore's own walk, with duplicated pass-through paths answered as
            # everywhere else (the unit added last); a plugin's override is its hook.
            fallback = content.grace_period_fallback(distribution, path)
        else:
            fallback = hooks.call(distribution, "get_fallback_ca", path)
        if fallback is None:
            return None
        found, version = fallback
        return self.serve_content_artifact(found, self.headers_for(distribution, path), version)


class RepositoryVersionHandler(ContentHandler):
    """Serves a repository version (the distribution's, or its repository's latest)."""

    def serve(self, request: ContentRequest, distribution: Distribution, path: str
              ) -> results.Result:
        repository, version, _ = sources.of(distribution)
        found = None
        if version is not None:
            found = self.serve_repository_version(request, distribution, version, path)
        if found is not None:
            return found
        if repository is None and version is None:
            return results.NotFound(NOT_POINTING)
        # Cached like pulpcore's: a new version invalidates the response cache.
        return results.NotFound(cacheable=True)

    def serve_repository_version(self, request: ContentRequest, distribution: Distribution,
                                 version: RepositoryVersion, path: str
                                 ) -> results.Result | None:
        probe = content.probe_version(version, path, with_index=True)
        if probe.index is not None:
            # pulpcore serves a version's index.html without first redirecting to add "/".
            index = f"{_directory(path)}index.html"
            return self.serve_content_artifact(probe.index,
                                               self.headers_for(distribution, index), version)
        listed = self.listing(request, distribution, path, version, None, probe.below)
        if listed is not None:
            return listed
        found = self.exact(probe, distribution, path)
        if found is None:
            return None
        return self.serve_content_artifact(found, self.headers_for(distribution, path), version)


class DistributionHandler(PublicationHandler, RepositoryVersionHandler):
    """pulpcore-content's full resolution order (module docstring); the default handler."""

    def serve(self, request: ContentRequest, distribution: Distribution, path: str
              ) -> results.Result:
        hooked = self.serve_content_handler(distribution, path)
        if hooked is not None:
            return hooked
        repository = version = None
        if distribution.checkpoint:
            chosen = self.select_checkpoint(request, distribution, path)
            if not isinstance(chosen, tuple):
                return chosen
            publication, path = chosen
        else:
            repository, version, publication = sources.of(distribution)
        found = None
        if publication is not None:
            found = self.serve_publication(request, distribution, publication, path)
        if not distribution.checkpoint:
            # A checkpoint is an exact snapshot: pulpcore-content also served files of the
            # current publication under old timestamps through the grace period.
            found = found or self.serve_grace_period(distribution, path)
        if found is None and version is not None and publication is None \
                and not distribution.SERVE_FROM_PUBLICATION:
            found = self.serve_repository_version(request, distribution, version, path)
        if found is None and distribution.remote_id is not None:
            found = self.serve_pull_through(request, distribution, path, repository)
        if found is not None:
            return found
        if not any((repository, version, publication, distribution.remote_id)):
            return results.NotFound(NOT_POINTING)
        # pulpcore caches these 404s: content can only appear with a new publication or
        # version, which invalidates the cache.
        return results.NotFound(cacheable=distribution.remote_id is None)

    def serve_content_handler(self, distribution: Distribution, path: str
                              ) -> results.Result | None:
        """Run the model's ``content_handler`` hook and convert what it gives back."""
        try:
            value = hooks.call(distribution, "content_handler", path)
        except hooks.PluginHookFailed as failed:
            # A raised aiohttp response (HTTPNotFound, a redirect) is an answer, not a fault.
            converted = self.convert(distribution, failed.cause)
            if converted is not None:
                return converted
            raise
        if value is None:
            return None
        if isinstance(value, ContentArtifact):
            version = sources.of(distribution).version
            return self.serve_content_artifact(value, self.headers_for(distribution, path),
                                               version)
        if isinstance(value, _RESULT_TYPES):
            return value
        converted = self.convert(distribution, value)
        if converted is not None:
            return converted
        raise hooks.PluginHookFailed(distribution, "content_handler", TypeError(
            f"it returned {type(value).__name__}; expected None, a ContentArtifact, a "
            "pulp_content_asgi result or an aiohttp response"))

    @staticmethod
    def convert(distribution: Distribution, value: object) -> results.Result | None:
        """What a bridge makes of a value ``content_handler`` returned or raised; a value
        the bridge cannot convert is the plugin's fault."""
        from pulp_content_asgi import db
        from pulp_content_asgi.plugin import registry

        try:
            return registry.convert_hook_value(value)
        except Exception as exc:  # e.g. a streaming response that cannot be converted
            if db.is_connection_failure(exc):
                raise
            raise hooks.PluginHookFailed(distribution, "content_handler", exc) from exc

    def select_checkpoint(self, request: ContentRequest, distribution: Distribution,
                          path: str) -> results.Result | tuple[Publication, str]:
        """The checkpoint publication for ``<timestamp>/<rest>``, a listing or a redirect."""
        if path == "":
            return results.ServeListing(checkpoints.listing(distribution.repository,
                                                            request.path))
        parsed = checkpoints.parse(path)
        if parsed is None:
            return results.NotFound()
        publication = checkpoints.publication_at(distribution.repository, parsed.at)
        if publication is None:
            return results.NotFound()
        canonical = checkpoints.format_timestamp(publication.pulp_created)
        if canonical != checkpoints.format_timestamp(parsed.at):
            prefix = content_prefix(distribution.pulp_domain)
            return results.Redirect(
                f"{prefix}{distribution.base_path}/{canonical}/{parsed.rest}", keep_query=True)
        return publication, parsed.rest

    def serve_pull_through(self, request: ContentRequest, distribution: Distribution,
                           path: str, repository: Repository | None) -> results.Result | None:
        """Content the distribution's remote has upstream (pulpcore's pull-through cache).

        A remote artifact already known for the URL is served like on-demand content (and
        added to the repository when it supports pull-through); otherwise an unsaved one is
        streamed and, when the remote can name its content type and is not "streamed",
        saved as new content.
        """
        remote = distribution.remote.cast()
        from pulp_content_asgi.plugin import registry

        url = hooks.call(remote, "get_remote_artifact_url", path,
                         request=registry.hook_request(request))
        if not url:
            return None
        if repository is not None:
            repository = repository.cast()
        headers = self.headers_for(distribution, path)
        known = (RemoteArtifact.objects.select_related("content_artifact__artifact__pulp_domain")
                 .filter(remote=remote, url=url).first())
        if known is not None:
            if repository is not None and repository.PULL_THROUGH_SUPPORTED:
                hooks.call(repository, "pull_through_add_content", known.content_artifact)
            return self.serve_content_artifact(known.content_artifact, headers, None)
        save = (hooks.call(remote, "get_remote_artifact_content_type", path) is not None
                and remote.policy != Remote.STREAMED)
        content_artifact = ContentArtifact(relative_path=path)
        remote_artifact = RemoteArtifact(remote=remote, url=url, content_artifact=content_artifact)
        return results.ServeRemote(content_artifact, headers, remote_artifact=remote_artifact,
                                   save=save, repository=repository)
