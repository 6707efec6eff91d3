"""Learning what the upstream declares about a download, and holding the download to it.

The plugin's :class:`~pulp_content_asgi.plugin.upstream.UpstreamCheck` names at most one
document (:func:`learn` fetches it with the remote's own downloader, so its auth, proxy,
TLS and retry settings apply, and reads at most ``DOCUMENT_LIMIT`` bytes of it into
memory, never to disk); :func:`verify` then checks the downloaded file, off the event
loop, before anything is saved. The rules (404 → nothing declared; any other failure →
the remote is not used) are the app's, the same for every plugin.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from pulpcore.exceptions import DigestValidationError

from pulp_content_asgi.bridge import downloads
from pulp_content_asgi.ondemand.plan import Candidate
from pulp_content_asgi.plugin import hooks
from pulp_content_asgi.plugin.upstream import DOCUMENT_LIMIT, Declared, Unreadable

log = logging.getLogger(__name__)

#: Statuses that mean "the upstream publishes no such document": nothing is declared.
ABSENT = (404, 410)
#: Bytes read per block when hashing a downloaded file for a declared digest the
#: downloader did not compute (sha1, md5).
BLOCK = 1024 * 1024


class Undeclarable(Exception):
    """What the upstream declares could not be learned (``document`` is the URL asked, or
    None when the check itself failed): the file is not fetched from this remote."""

    def __init__(self, url: str, document: str | None, cause: BaseException) -> None:
        what = (f"the upstream's declaration {document}" if document
                else "the plugin's upstream check")
        super().__init__(f"{what} for {url} could not be read ({type(cause).__name__}: "
                         f"{cause})")
        self.document = document
        self.cause = cause


class TooLarge(Exception):
    """The declaring document is larger than ``DOCUMENT_LIMIT``."""


#: What fetching the document may raise that means "not learned" (a plugin's
#: ``get_downloader`` failing included).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    *downloads.SKIPPABLE, TooLarge, hooks.PluginHookFailed)


async def _fetch_document(remote: Any, url: str, used: list[Any]) -> bytes | None:
    """The body of ``url`` (None for a 404 or 410), through ``remote``'s downloader
    (appended to ``used``: it shares the remote's session with the file's downloader,
    which closes it); raises the downloader's errors and :class:`TooLarge`."""
    body = bytearray()

    async def restart(headers: Any) -> None:  # a retry sends the document again
        body.clear()

    downloader = hooks.call(remote, "get_downloader", url=url, headers_ready_callback=restart)
    used.append(downloader)
    downloads.fetch_raw(downloader)

    async def collect(data: bytes) -> None:  # in memory, bounded: no file is written
        body.extend(data)
        if len(body) > DOCUMENT_LIMIT:
            raise TooLarge(f"more than {DOCUMENT_LIMIT} bytes")

    async def nothing() -> None:
        return None

    downloader.handle_data = collect
    downloader.finalize = nothing
    try:
        await downloader.run()
    except downloads.SKIPPABLE as exc:
        refusal = downloads.upstream_refusal(exc)  # the upstream's HTTP status, if any
        if refusal is not None and refusal[0] in ABSENT:
            return None
        raise
    except FileNotFoundError:  # a file:// remote's missing document
        return None
    return bytes(body)


async def _close(used: list[Any]) -> None:
    """Close the session of a remote whose file will not be fetched after all."""
    for downloader in used:
        if hasattr(downloader, "session"):
            await downloader.session.close()


async def documents(remote: Any, urls: list[str]) -> dict[str, bytes | None]:
    """Several declaring documents of one remote, fetched concurrently through its
    downloaders (its session closed afterwards): URL → body, None for a 404/410; a URL
    that could not be fetched (:data:`UNAVAILABLE`) is left out."""
    used: list[Any] = []
    answers = await asyncio.gather(*(_fetch_document(remote, url, used) for url in urls),
                                   return_exceptions=True)
    await _close(used)
    found: dict[str, bytes | None] = {}
    for url, answer in zip(urls, answers, strict=True):
        if isinstance(answer, UNAVAILABLE):
            log.warning("Could not fetch %s (%r).", url, answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            found[url] = answer
    return found


async def learn(candidate: Candidate) -> Declared | None:
    """What the upstream declares about ``candidate``'s file (None: no check); raises
    :class:`Undeclarable` when it cannot be learned."""
    check = candidate.check
    if check is None:
        return None
    remote_artifact = candidate.remote_artifact
    url = remote_artifact.url
    document: bytes | None = None
    used: list[Any] = []
    try:
        if candidate.document is not None:
            try:
                document = await _fetch_document(remote_artifact.remote, candidate.document,
                                                 used)
            except UNAVAILABLE as exc:
                raise Undeclarable(url, candidate.document, exc) from exc
        try:
            declared = check.declared(url, candidate.relative_path, document)
        except Exception as exc:  # the plugin's code: any failure means "not learned"
            if not isinstance(exc, Unreadable):
                log.exception("%s.declared failed for %s", type(check).__qualname__, url)
            raise Undeclarable(url, candidate.document, exc) from exc
    except BaseException:
        await _close(used)
        raise
    if document is None and candidate.document is not None and declared.empty:
        log.info("The upstream publishes no %s; %s is saved unverified, as before.",
                 candidate.document, url)
    return declared


def verify(declared: Declared, path: str, computed: dict[str, Any], url: str) -> None:
    """Hold the downloaded file at ``path`` to ``declared`` (``computed``: the digests the
    download already has: the artifact's, and the declared ones it hashed in lanes of
    their own, ``digests.Digests.declared``). Blocking (reads the file for a digest not
    computed, and for ``declared.verify``): run it off the loop. Raises
    :class:`DigestValidationError` on a mismatch."""
    missing = [a for a in declared.digests if not computed.get(a)]
    actual = {a: computed[a] for a in declared.digests if computed.get(a)}
    if missing:
        actual.update(_digests(path, missing))
    for algorithm, expected in declared.digests.items():
        if actual[algorithm] != expected:
            raise DigestValidationError(f"{algorithm}:{actual[algorithm]}",
                                        f"{algorithm}:{expected} (declared by the upstream)",
                                        url=url)
    if declared.verify is not None:
        differs = declared.verify(path)
        if differs is not None:
            raise DigestValidationError(differs, "what the upstream declared", url=url)


def _digests(path: str, algorithms: list[str]) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as source:
        while block := source.read(BLOCK):
            for hasher in hashers.values():
                hasher.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}
