"""What resolution decided to serve, as plain typed values.

Handlers return one of these; :mod:`pulp_content_asgi.render` alone turns them into HTTP
responses. A successful outcome is never raised, and nothing here knows about ASGI,
aiohttp or Django responses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pulp_content_asgi.protocol.listing import Listing

if TYPE_CHECKING:
    from pulpcore.app.models import Artifact, ContentArtifact, RemoteArtifact, Repository

    from pulp_content_asgi.plugin.upstream import UpstreamCheck

Headers = Mapping[str, str]


@dataclass(frozen=True)
class ServeArtifact:
    """Send a stored artifact (the relative path names it for the client).

    On a domain that redirects downloads to object storage the client is sent a signed
    URL, unless ``inline``: then the bytes go through the content app, as pulpcore's
    ``ArtifactResponse`` sends them (for documents whose relative links must resolve
    against the content app, such as pulp_python's simple index). ``redirect`` sends the
    client to a signed URL even when the domain's ``redirect_to_object_storage`` is off,
    if its storage can sign one (S3, Azure, GCS; a FileSystem domain serves the bytes):
    for plugins that redirect by their own rule (pulp_maven's path index redirects files
    above ``MAVEN_PATH_INDEX_REDIRECT_THRESHOLD``). Either way the request's
    preconditions are evaluated first (a ``304``/``412`` instead of the redirect), and the
    redirect carries ``headers`` to the storage as its response parameters. ``inline``
    and ``redirect`` together raise ``ValueError``.
    """

    artifact: Artifact
    relative_path: str
    headers: Headers = field(default_factory=dict)
    last_modified: datetime | None = None
    inline: bool = False
    redirect: bool = False

    def __post_init__(self) -> None:
        if self.inline and self.redirect:
            raise ValueError("a ServeArtifact is either inline or redirected, not both")


@dataclass(frozen=True)
class ServeLocalFile:
    """Send a file from the local filesystem that is not an artifact (legacy hook results)."""

    path: str
    headers: Headers = field(default_factory=dict)


@dataclass(frozen=True)
class ServeRemote:
    """Stream a content artifact that has no stored artifact yet from its remotes.

    For the first request of pull-through content the content artifact is unsaved and
    ``remote_artifact`` is the (unsaved) one to fetch; ``save`` says whether the download
    becomes content, and ``repository`` receives it when it supports pull-through.
    ``last_modified`` is what the stored file will say (when the content joined the
    repository), so the response says the same before and after the save.
    ``check`` learns what the upstream declares about the file, which a saved download
    must match (:mod:`pulp_content_asgi.plugin.upstream`); when None, the dispatcher asks
    the handler's ``upstream_check``.
    """

    content_artifact: ContentArtifact
    headers: Headers = field(default_factory=dict)
    remote_artifact: RemoteArtifact | None = None
    save: bool = True
    repository: Repository | None = None
    last_modified: datetime | None = None
    check: UpstreamCheck | None = None


@dataclass(frozen=True)
class ServeListing:
    """Send a directory listing page."""

    listing: Listing
    headers: Headers = field(default_factory=dict)


@dataclass(frozen=True)
class ServeBody:
    """Send bytes held in memory (small generated documents: repo configs, JSON, keys)."""

    body: bytes
    status: int = 200
    headers: Headers = field(default_factory=dict)


@dataclass(frozen=True)
class ServeGenerated:
    """Send a document that needs the network (never the ORM) to be made: ``produce()``
    runs on the event loop once the headers are sent (not for ``HEAD``), and returns the
    body. ``200`` with ``headers``, no ``Content-Length`` (a failure cuts the response), no
    Range, no validators, never kept by the response cache. For documents that combine
    the database with an upstream's answers (the npm packument's integrity of tarballs
    Pulp has no digest for); decide everything that needs the ORM in the handler."""

    produce: Callable[[], Awaitable[bytes]]
    headers: Headers = field(default_factory=dict)


@dataclass(frozen=True)
class Redirect:
    """Send the client elsewhere (301 for canonical paths, 302 for storage URLs).

    ``keep_query`` appends the request's query string to ``location`` byte for byte:
    for redirects to the same resource under its canonical path (a missing slash, a
    checkpoint timestamp), where the query still means what the client meant.
    """

    location: str
    status: int = 301
    headers: Headers = field(default_factory=dict)
    keep_query: bool = False


@dataclass(frozen=True)
class NotFound:
    """Nothing is served at this path; ``reason`` tells the client why when it is useful.

    ``cacheable`` 404s (a distribution with a source and no remote that lacks the path)
    may be kept by the response cache, as pulpcore does; the next publication invalidates
    them.
    """

    reason: str = "Not Found"
    cacheable: bool = False


@dataclass(frozen=True)
class Denied:
    """A content guard refused the request; ``reason`` is the guard's message."""

    reason: str


@dataclass(frozen=True)
class Failure:
    """Any other error status with a message for the client and the operator."""

    status: int
    reason: str
    headers: Headers = field(default_factory=dict)


Result = (
    ServeArtifact
    | ServeLocalFile
    | ServeRemote
    | ServeListing
    | ServeBody
    | ServeGenerated
    | Redirect
    | NotFound
    | Denied
    | Failure
)
