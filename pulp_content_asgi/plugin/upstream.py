"""What an upstream declares about a file the app is about to fetch and save.

Some plugins' syncs record no digest for on-demand content (pulp_npm's tarballs,
pulp_ostree's objects), and pull-through content never has one (pulpcore makes its
remote artifact from the URL alone). A download without an expected digest is saved
whatever the upstream sent. Yet the upstream itself often declares what the file must be:
Maven's ``<file>.sha1`` sidecar, an npm registry's version document (``dist.integrity``),
an OSTree object's name (its checksum). A handler hands the app an
:class:`UpstreamCheck` (``ContentHandler.upstream_check``, or ``ServeRemote.check``), and
the app verifies the download against what it declares before saving it; a mismatch is
refused like any digest mismatch (docs/ondemand.md, "What the upstream declares").

The check is plain code over plain values (URLs, the relative path, bytes): it never
touches the ORM and never does I/O itself; the app fetches the one document the check
names with the remote's own downloader (its auth, proxy and TLS settings).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Algorithms a declaration may name (``hashlib`` names). md5 and sha1 are accepted although
#: pulpcore's ``ALLOWED_CONTENT_CHECKSUMS`` excludes them: a declared digest is only used to
#: refuse a file that does not match; it adds a check where there was none and never makes
#: content trusted (no ETag or artifact digest comes from it).
ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})
_HEX = re.compile(r"[0-9a-f]+")
_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}

#: Checks the downloaded file (its path): None when it is what the upstream declared, else
#: a message saying what differs. Runs off the event loop, once per download.
Verify = Callable[[str], "str | None"]


class Unreadable(ValueError):
    """The upstream's document exists but says nothing this check can read (an HTML page
    where a checksum belongs, JSON of another package): raised by
    :meth:`UpstreamCheck.declared`; the download is refused, as when the document cannot
    be fetched."""


@dataclass(frozen=True)
class Declared:
    """What the upstream declares about one file.

    ``digests``: algorithm (:data:`ALGORITHMS`) → hex digest the file must have.
    ``verify``: a check of the downloaded file for declarations that are not a digest of
    its bytes (an OSTree file object's checksum covers its header and uncompressed
    content). Both empty: nothing is declared, the download is saved as before.
    """

    digests: Mapping[str, str] = field(default_factory=dict)
    verify: Verify | None = None

    def __post_init__(self) -> None:
        normal = {}
        for algorithm, value in self.digests.items():
            value = value.strip().lower()
            if algorithm not in ALGORITHMS:
                raise Unreadable(f"unknown digest algorithm {algorithm!r}")
            if len(value) != _LENGTHS[algorithm] or not _HEX.fullmatch(value):
                raise Unreadable(f"{value!r} is not a {algorithm} digest")
            normal[algorithm] = value
        object.__setattr__(self, "digests", normal)

    @property
    def empty(self) -> bool:
        return not self.digests and self.verify is None


class UpstreamCheck:
    """How to learn what the upstream declares about a file (subclass it).

    The app calls :meth:`document` on the ORM thread when it plans the download of a
    remote artifact that will be saved (never for stored content, never for ``streamed``
    remotes), fetches that URL, if any, with the remote's downloader, and calls
    :meth:`declared` with its body (at most :data:`DOCUMENT_LIMIT` bytes) before the
    file's own download starts. Rules the app applies, whatever the plugin:

    * the document answers ``404`` or ``410``: ``declared(..., None)``; the checks here
      then declare nothing, and the file is saved as it would be without a check;
    * the document cannot be fetched (another HTTP error, a timeout, a connection error,
      more than :data:`DOCUMENT_LIMIT` bytes) or :meth:`declared` raises
      :class:`Unreadable`: the file is **not** fetched from this remote (the next remote
      artifact is tried; none left: ``404``, or ``502`` for pull-through), nothing is
      saved, and the remote artifact is not put in its cool-down (the next request asks
      again);
    * the file does not match: refused like any digest mismatch (the responses cut, the
      remote artifact marked failed, nothing saved).
    """

    def document(self, url: str, relative_path: str) -> str | None:
        """The URL of the one document declaring the file at ``url`` (the remote
        artifact's URL; ``relative_path`` is the content artifact's), or None when the
        declaration needs no request."""
        return None

    def declared(self, url: str, relative_path: str, document: bytes | None) -> Declared:
        """What is declared about the file at ``url``; ``document`` is the body of
        :meth:`document`'s URL (None: there is none, or the upstream has none). Raise
        :class:`Unreadable` for a document that cannot be read."""
        return Declared()


#: The most bytes of a declaring document the app reads (a checksum sidecar is a line, an
#: npm version document a few KiB); held in memory while it is read.
DOCUMENT_LIMIT = 256 * 1024


#: openssl's ``dgst`` output, which Maven also accepts in a sidecar: ``… = <hex>``.
OPENSSL_LINE = re.compile(r"^.+= ?[0-9A-Fa-f]+$")


class SidecarCheck(UpstreamCheck):
    """The ``<url>.<algorithm>`` sidecar Maven repositories publish (and many mirrors of
    other formats), read as Maven reads it (``ChecksumUtils.read`` in maven-resolver):
    the first line; when it has the openssl shape ``<anything>= <hex>``
    (``SHA1(x.jar)= …``, ``SHA1 (x.jar) = …``) the digest is its last word, otherwise
    its first word (a bare digest, or ``sha1sum`` output ``<hex>  x.jar``)."""

    def __init__(self, algorithm: str = "sha1",
                 skip: tuple[str, ...] = (".md5", ".sha1", ".sha256", ".sha512", ".asc")
                 ) -> None:
        self.algorithm = algorithm
        self.skip = skip

    def document(self, url: str, relative_path: str) -> str | None:
        if url.endswith(self.skip):
            return None  # a sidecar has no sidecar
        return f"{url}.{self.algorithm}"

    def declared(self, url: str, relative_path: str, document: bytes | None) -> Declared:
        if document is None:
            return Declared()
        lines = document.decode("ascii", "replace").strip().splitlines()
        words = lines[0].split() if lines else []
        if not words:
            raise Unreadable(f"the {self.algorithm} sidecar of {url} is empty")
        if OPENSSL_LINE.match(lines[0].strip()):
            return Declared({self.algorithm: words[-1]})
        return Declared({self.algorithm: words[0]})


async def fetch_documents(remote: Any, urls: list[str]) -> dict[str, bytes | None]:
    """Declaring documents of one remote, fetched concurrently through its downloaders (on
    the event loop, e.g. in a ``ServeGenerated``'s ``produce``): URL → body (at most
    :data:`DOCUMENT_LIMIT` bytes), None for a 404/410; a URL that could not be fetched is
    left out (and logged). ``remote`` is the cast remote, loaded on the ORM thread."""
    from pulp_content_asgi.ondemand import declared

    return await declared.documents(remote, urls)
