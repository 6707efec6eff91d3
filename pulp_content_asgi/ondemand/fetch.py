"""The download behind a spool: remotes tried in order, bytes published once, then saved.

Uses each remote's own ``get_downloader()`` so plugin downloaders (token auth, ULN, SLES
tokens, client certificates, proxies) keep working; the artifact itself is fetched without
content decoding (:class:`~pulp_content_asgi.bridge.downloads.RawSession`), so a file an
upstream labels ``Content-Encoding: gzip`` arrives as the bytes its digest describes. A
remote that fails before the first byte reached any client is skipped for the next one,
as in pulpcore; after that the failure can only be reported by cutting the responses
short.

A full disk is the operator's to fix, not the remote's: it is logged naming the directory
(``WORKING_DIRECTORY`` while downloading, ``MEDIA_ROOT`` while saving), answered ``503``
with ``Retry-After`` to clients still waiting for headers (the others are cut short), and
nothing of the download is kept. A database lost during the save does not fail the
clients: the download is verified, so they get all of it, and the save runs again until
the database is back (:meth:`Fetch._save_when_back`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from pulpcore.exceptions import DigestValidationError, SizeValidationError

from pulp_content_asgi import db, metrics
from pulp_content_asgi.bridge import downloads
from pulp_content_asgi.ondemand import declared, save
from pulp_content_asgi.ondemand.coordination import spool_path
from pulp_content_asgi.ondemand.digests import Digests
from pulp_content_asgi.ondemand.placement import Placement, no_space
from pulp_content_asgi.ondemand.plan import Candidate, RemotePlan
from pulp_content_asgi.ondemand.spool import (
    Abandoned,
    FollowedSpool,
    Spool,
    UpstreamError,
    download_name,
)
from pulp_content_asgi.plugin import hooks
from pulp_content_asgi.plugin.upstream import Declared

log = logging.getLogger(__name__)

#: Seconds between attempts to save a download while the database is unreachable (doubling
#: from the first to the last).
SAVE_RETRY = (1.0, 30.0)
#: Retry-After (seconds) of a 503 for a full disk.
FULL_RETRY_AFTER = 60
FULL_ANSWER = ("The content app has no space left to store this download; the server log "
               "says which directory is full. Retry once the operator has freed space.")


class NoSpace(Exception):
    """A directory the download needs is full (``setting`` names it, ``path`` is where)."""

    def __init__(self, setting: str, path: str, cause: OSError) -> None:
        super().__init__(f"{setting} ({path}) is full: {cause}")
        self.setting = setting
        self.path = path


class Diverged(Exception):
    """A retry sent other bytes than its earlier attempt where that attempt's bytes were
    already published (the upstream's file changed, or one attempt was mangled): the
    clients' responses cannot be completed with the retry's bytes."""


#: An upstream that failed this download: the next remote before any byte was sent,
#: else a cut.
_UPSTREAM_FAILED: tuple[type[BaseException], ...] = (*downloads.SKIPPABLE, Diverged)


def _private_spool_path() -> str:
    """A spool file of this process alone (created by the download, off the loop)."""
    return os.path.join(str(settings.WORKING_DIRECTORY), f"ondemand-{uuid.uuid4().hex}")


class SpoolingDownloader:
    """Attaches a plugin's downloader to a spool: every byte goes to the spool once (a
    retry that re-sends bytes already published only adds what is new), headers as soon
    as they are known, upstream latency to the metrics. ``candidate.save`` says whether
    the downloader also keeps (and validates) the file to be saved: its digests are then
    :class:`~.digests.Digests`' (off the event loop, in parallel) instead of pulpcore's
    ``handle_data``/``finalize`` (on the loop), validated by pulpcore's own
    ``validate_digests``/``validate_size``, and its file is the spool itself
    (:meth:`~.spool.Spool.keep`): the bytes are written once, not once for clients and
    once for the artifact."""

    def __init__(self, candidate: Candidate, spool: Spool,
                 declared: tuple[str, ...] = ()) -> None:
        self.candidate = candidate
        self.spool = spool
        #: Algorithms the upstream declares a digest in that pulpcore does not compute:
        #: hashed in lanes of their own while the file downloads (``declared_digests``).
        self.declared = declared
        self.declared_digests: dict[str, str] = {}
        self.offset = 0  # bytes of the current attempt
        self.files: set[str] = set()  # the file kept to be saved (removed unless saved)
        self.digests: Digests | None = None  # the current attempt's (saved downloads)
        self._keeping: asyncio.Future[str] | None = None  # the spool being kept
        spool.durable = candidate.save
        self.asked = time.monotonic()
        self.answered = False
        remote_artifact = candidate.remote_artifact
        self.downloader = hooks.call(remote_artifact.remote, "get_downloader",
                                     remote_artifact=remote_artifact,
                                     headers_ready_callback=self.on_headers)
        downloads.fetch_raw(self.downloader)  # the bytes the digests describe, undecoded
        self.downloader.handle_data = self.on_data
        self.downloader.finalize = self.finalize if candidate.save else self.check_size

    def _first_byte(self) -> None:
        if not self.answered:
            self.answered = True
            metrics.current().upstream(time.monotonic() - self.asked, ok=True)

    async def on_headers(self, headers: Mapping[str, str]) -> None:
        self.offset = 0  # a retry starts again from the first byte
        self._restart()
        self._first_byte()
        self.check_declared(headers)
        await self.spool.set_headers(headers)

    def _restart(self) -> None:
        """A new attempt is digested afresh (pulpcore's retry starts a new file too); its
        bytes are held to those the spool already has (:meth:`on_data`)."""
        if self.digests is not None:
            self.digests.abandon()
            self.digests = None

    def check_declared(self, headers: Mapping[str, str]) -> None:
        """An upstream that declares another length than the remote artifact promised is
        sending something else (an HTML error page with a ``200``, a wrong
        ``Content-Length``): refused before its headers reach a client, so the next
        remote is tried and the client gets a status, not a cut. The bytes are never
        decoded, so a ``Content-Length`` counts them, coded or not. Raises
        :class:`SizeValidationError`."""
        expected = self.candidate.remote_artifact.size
        declared = {k.lower(): v for k, v in headers.items()}.get("content-length", "")
        if expected and declared.isdigit() and int(declared) != expected:
            raise SizeValidationError(int(declared), expected, url=self.downloader.url)

    async def on_data(self, data: bytes) -> None:
        self._first_byte()
        if self.candidate.save:
            self._digests().put(data)  # digested while the spool gets the bytes
        await self.spool.set_headers({})  # downloaders without a headers callback (file://)
        start, self.offset = self.offset, self.offset + len(data)
        if start < self.spool.size:  # a retry re-sends bytes already published
            again = data[:self.spool.size - start]
            if await self.spool.written(start, len(again)) != again:
                raise Diverged(f"the upstream sent other bytes at offset {start} on a "
                               "retry than before it; the clients already have the first")
        if self.offset > self.spool.size:
            await self.spool.write(data[max(self.spool.size - start, 0):])
        if self.digests is not None:
            await self.digests.wait_room()

    def _digests(self) -> Digests:
        if self.digests is None:
            self.digests = Digests.configured(self.declared)
        return self.digests

    async def finalize(self) -> None:
        """pulpcore's ``BaseDownloader.finalize`` for a saved download, off the loop: once
        every digest has its bytes, the spool is made durable and kept under a name of
        its own (the downloader's file); then the downloader holds the file, digests and
        size as its own ``handle_data`` would have left them (``path``, ``_digests``,
        ``_size``: what its ``artifact_attributes`` and ``validate_*`` read), and
        pulpcore's ``validate_digests``/``validate_size`` raise
        :class:`DigestValidationError`/:class:`SizeValidationError` as they always do.
        A retry that ended short of the bytes an earlier attempt already spooled raises
        :class:`Diverged` (the spool is not the file digested)."""
        digests = self._digests()  # an empty body still gets its digests
        hashers, size = await digests.finish()
        if size != self.spool.size:
            raise Diverged(f"the upstream sent {size} bytes on a retry, where an earlier "
                           f"attempt had sent {self.spool.size} already")
        self.declared_digests = digests.declared_digests()
        path = download_name(str(self.downloader.url))
        self.files.add(path)
        # Its link is made on a pool thread whatever happens: a download cancelled
        # meanwhile waits for it before removing its files (run()).
        self._keeping = asyncio.ensure_future(self.spool.keep(path))
        await asyncio.shield(self._keeping)
        self.downloader.path = path
        self.downloader._digests = hashers
        self.downloader._size = size
        self.downloader.validate_digests()
        self.downloader.validate_size()

    async def check_size(self) -> None:
        """A streamed download is not digested (as in pulpcore), but a body of another
        size than the remote artifact promised is not the file (a ``Content-Length``
        shorter than the body, a ``200`` error page): it must end in a cut, not look
        complete. Raises :class:`SizeValidationError`."""
        expected = self.candidate.remote_artifact.size
        if expected and self.offset != expected:
            raise SizeValidationError(self.offset, expected, url=self.downloader.url)

    async def run(self) -> Any:
        """Download; the downloader's result (the file to save, its digests). Wrong bytes
        (:class:`DigestValidationError`, :class:`SizeValidationError`) are not retried:
        the upstream sends them again."""
        completed = False
        result: Any = None
        try:
            result = await self.downloader.run(extra_data={
                "disable_retry_list": (DigestValidationError, SizeValidationError)})
            completed = True
            return result
        finally:
            if not self.answered:
                metrics.current().upstream(time.monotonic() - self.asked, ok=False)
            if self.digests is not None and not completed:
                self.digests.abandon()
            # The kept name exists once its link is over, or never: wait for it, however
            # often this task is cancelled meanwhile (the link runs on a thread anyway).
            while self._keeping is not None and not completed and not self._keeping.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._keeping)
            # The kept file, unless it is the result (a validation failed after it).
            leftovers = self.files - {result.path} if completed else self.files
            if leftovers:
                await asyncio.to_thread(_remove, leftovers)
            if hasattr(self.downloader, "session"):
                await self.downloader.session.close()


def _remove(paths: set[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class Fetch:
    """One download for every client that wants the same artifact in this process.

    ``lock`` is the advisory lock held while this process leads the download for every
    process (its spool is then the shared one named after the artifact).
    """

    def __init__(self, plan: RemotePlan, lock: int | None) -> None:
        self.plan = plan
        self.lock = lock
        shared = lock is not None
        self.spool = Spool(spool_path(plan.key) if shared else _private_spool_path(), shared)
        self.task: asyncio.Task[None] | None = None
        self.saved: Any = None  # the saved ContentArtifact
        self.saved_at: float | None = None  # wall clock, once the save committed
        self.after_save: list[Any] = list(plan.after_save)
        self.clients = 0
        #: Whether the download will be saved (the candidate being fetched is not streamed).
        self.saves = bool(plan.candidates) and plan.candidates[0].save
        #: Every byte is in (the save may be running): too late to abandon it.
        self.downloaded = False
        #: Being cancelled for want of clients (:meth:`cancel`).
        self.abandoning = False
        self.watched = False  # a watch for clients is running (inflight.py)

    def remaining(self) -> int | None:
        """Bytes still to download: the size the remote artifact promised, else the
        upstream's ``Content-Length``, minus what is spooled; None when neither is known."""
        size = self.plan.size
        if size is None and self.spool.headers:
            lowered = {k.lower(): v for k, v in self.spool.headers.items()}
            if "content-encoding" not in lowered and "content-length" in lowered:
                with contextlib.suppress(ValueError):
                    size = int(lowered["content-length"])
        return None if size is None else max(size - self.spool.size, 0)

    async def cancel(self, remaining: int | None, limit: int) -> None:
        """Cancel the download (no client is receiving it and ``remaining`` bytes exceed
        ``limit``): nothing is saved, no file of it is kept, and the spool's outcome
        says ``abandoned`` so followers in other processes fetch afresh. Returns once the
        download has stopped."""
        if self.task is None or self.task.done() or self.downloaded:
            return
        self.abandoning = True
        left = "an unknown number of" if remaining is None else str(remaining)
        log.info("Cancelled the on-demand download of %s: no client is receiving it and %s "
                 "bytes of it were left to fetch (%s); nothing of it was saved.",
                 self.plan.relative_path, left,
                 f"CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES={limit}" if self.saves
                 else "streamed content is never saved")
        metrics.current().abandoned()
        self.task.cancel()
        await asyncio.wait({self.task})

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run_or_abandon(), name=f"fetch {self.plan.key}")
        recorder = metrics.current()
        if recorder.enabled:
            recorder.downloads(+1)
            self.task.add_done_callback(lambda _: recorder.downloads(-1))
        return self.task

    async def _run_or_abandon(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            if not self.abandoning:
                raise  # the worker stops
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self.spool.finish(Abandoned(f"no client was left for {self.plan.key}"))

    async def _run(self) -> None:
        try:
            await self.spool.open()
        except OSError as exc:
            if no_space(exc):
                await self._full(NoSpace("WORKING_DIRECTORY",
                                         str(settings.WORKING_DIRECTORY), exc))
                return
            log.error("Cannot create the spool file %s for %s (%s); check that "
                      "WORKING_DIRECTORY is writable and has space.", self.spool.path,
                      self.plan.relative_path, exc)
            await self.spool.finish(UpstreamError(503, "The content app cannot store this "
                                                       "download; the server log says why."))
            return
        last: BaseException | None = None
        for candidate in self.plan.candidates:
            try:
                await self._fetch(candidate)
                return
            except declared.Undeclarable as exc:
                # Nothing was fetched: the next remote, as for an unreachable upstream,
                # without a cool-down (the document may be back for the next request).
                last = exc
                log.warning("Not fetching %s from '%s': %s. Nothing is served or saved "
                            "from this remote until the upstream answers; check it.",
                            self.plan.relative_path, candidate.remote_artifact.url, exc)
            except _UPSTREAM_FAILED as exc:
                last = exc
                if self.spool.size:
                    log.warning("Downloading %s from '%s' failed after %d bytes were sent "
                                "(%r); the responses were cut short and nothing was saved. "
                                "The next request downloads it again.",
                                self.plan.relative_path, candidate.remote_artifact.url,
                                self.spool.size, exc)
                    await self.spool.finish(exc)
                    return
                log.warning("Could not download remote artifact at '%s': %r",
                            candidate.remote_artifact.url, exc)
            except (DigestValidationError, SizeValidationError) as exc:
                sent = self.spool.headers is not None
                await self._corrupt(candidate, exc, sent)
                if not sent:  # refused before any client saw a header: the next remote
                    last = exc
                    continue
                await self.spool.finish(exc)
                return
            except NoSpace as exc:
                await self._full(exc)
                return
            except OSError as exc:
                if not no_space(exc):
                    log.exception("Fetching %s failed", candidate.remote_artifact.url)
                    await self.spool.finish(exc)
                    return
                await self._full(NoSpace("WORKING_DIRECTORY",
                                         str(settings.WORKING_DIRECTORY), exc))
                return
            except Exception as exc:
                log.exception("Fetching %s failed", candidate.remote_artifact.url)
                await self.spool.finish(exc)
                return
        await self.spool.finish(self._nothing_served(last))

    async def _full(self, exc: NoSpace) -> None:
        log.error("%s: the on-demand download of %s was abandoned and nothing of it was "
                  "kept. Free space in %s (or give it more); the next request downloads "
                  "it again.", exc, self.plan.relative_path, exc.path)
        await self.spool.finish(UpstreamError(503, FULL_ANSWER,
                                              {"Retry-After": str(FULL_RETRY_AFTER)}))

    def _nothing_served(self, last: BaseException | None) -> UpstreamError:
        if self.plan.pull_through_url and isinstance(last, declared.Undeclarable):
            return UpstreamError(502, "Error while fetching from upstream remote("
                                 f"{self.plan.pull_through_url}): {last}")
        refusal = downloads.upstream_refusal(last)
        if self.plan.pull_through_url and refusal is not None:
            status, message, headers = refusal
            return UpstreamError(status, "Error while fetching from upstream remote("
                                 f"{self.plan.pull_through_url}): {message}", headers)
        return UpstreamError(404, "Not Found")

    async def _corrupt(self, candidate: Candidate, exc: Exception, sent: bool) -> None:
        """The upstream sent other bytes than the remote artifact promised: log it and
        skip the remote artifact for REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN seconds."""
        cooldown = settings.REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN
        what = ("Pulp tried streaming %r to the client, but it failed validation (%s). The "
                "response was cut off" if sent else
                "The upstream answered %r with other bytes than the remote artifact promised "
                "(%s). Nothing was sent; the next remote artifact is tried")
        if candidate.remote_artifact._state.adding:  # new pull-through content: no row
            log.error(what + "; nothing was saved, and the next request asks the upstream "
                      "again. Fix the upstream, or point the distribution at another "
                      "remote.", candidate.remote_artifact.url, exc)
            return
        log.error(
            what + " and this remote artifact is ignored for %ss. If the remote is fixed, "
            "resync the repository; if it is permanently corrupted, replace the remote and "
            "resync.", candidate.remote_artifact.url, exc, cooldown)
        with contextlib.suppress(db.DatabaseUnavailable):
            await db.run(save.mark_failed, candidate.remote_artifact)

    async def _fetch(self, candidate: Candidate) -> None:
        self.saves = candidate.save
        promised = await declared.learn(candidate)
        downloading = SpoolingDownloader(
            candidate, self.spool, tuple(promised.digests) if promised is not None else ())
        result = await downloading.run()
        self.downloaded = True
        if not candidate.save:
            await self.spool.finish()
            return
        attributes = result.artifact_attributes
        if promised is not None and not promised.empty:
            computed = {**downloading.declared_digests, **attributes}
            await self._hold_to(promised, result.path, computed, candidate)
        placement = Placement(result.path, attributes["sha256"], int(attributes["size"]))
        try:
            await self._store(attributes, placement, candidate.remote_artifact)
        except db.DatabaseUnavailable as exc:
            log.warning("The database went away while saving %s (%s). The download is "
                        "verified and served; it is saved once the database is back.",
                        self.plan.relative_path, exc)
            await self.spool.finish()
            await self._save_when_back(attributes, placement, candidate.remote_artifact)
            return
        except Exception as exc:
            await self._give_back(placement, candidate.remote_artifact)
            if no_space(exc):
                raise NoSpace("MEDIA_ROOT", str(settings.MEDIA_ROOT), exc) from exc
            raise
        await self.spool.finish()

    async def _hold_to(self, promised: Declared, path: str, attributes: dict[str, Any],
                       candidate: Candidate) -> None:
        """Check the downloaded file against what the upstream declared (off the loop;
        the tail of every response still waits): a mismatch removes the file and raises
        :class:`DigestValidationError`, handled like any digest mismatch."""
        url = candidate.remote_artifact.url
        try:
            await asyncio.to_thread(declared.verify, promised, path, attributes, url)
        except BaseException:
            await asyncio.to_thread(_remove, {path})
            raise

    async def _store(self, attributes: dict[str, Any], placement: Placement,
                     remote_artifact: Any) -> None:
        self.saved = await db.run(self._save, attributes, placement, remote_artifact,
                                  list(self.after_save))
        self.saved_at = time.time()
        await self._add_to_repository()

    async def _save_when_back(self, attributes: dict[str, Any], placement: Placement,
                              remote_artifact: Any) -> None:
        """Run the save again (every step is idempotent) until the database answers; the
        download stays joinable meanwhile. A worker stopped before then leaves the placed
        file (whole, verified) for the next save of the artifact to adopt."""
        delay, most = SAVE_RETRY
        while True:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:  # the worker stops: a download not placed goes
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(placement.source)
                raise
            delay = min(delay * 2, most)
            try:
                await self._store(attributes, placement, remote_artifact)
            except db.DatabaseUnavailable:
                continue
            except Exception:
                log.exception("Saving %s after the database came back failed; nothing of "
                              "it is kept.", self.plan.relative_path)
                await self._give_back(placement, remote_artifact)
                return
            log.warning("Saved %s now that the database is back.", self.plan.relative_path)
            return

    async def _give_back(self, placement: Placement, remote_artifact: Any) -> None:
        """After a save that failed for good: no file of it stays (unless a row has it)."""
        try:
            await db.run(save.settle_back, remote_artifact, placement)
        except db.DatabaseUnavailable:
            log.error("Could not check whether %s in storage belongs to an artifact (the "
                      "database is unavailable); it is left in place for the next save of "
                      "that artifact to adopt.", placement.name)

    def _save(self, attributes: dict[str, Any], placement: Placement, remote_artifact: Any,
              after_save: list[Any]) -> Any:
        """Save, then the follow-ups (caching the response), in one transaction on the ORM
        thread: whoever sees the saved artifact also finds its cache entry, so the request
        after this download is a cache hit whichever worker answers it."""
        with transaction.atomic():
            saved = save.save(attributes, placement, remote_artifact,
                              self.plan.hook_request)
            for callback in after_save:
                try:
                    # A savepoint: a follow-up's failed query must not doom the save.
                    with transaction.atomic():
                        callback(saved)
                except Exception:  # the artifact is saved; only the follow-up failed
                    log.exception("After saving %s, %r failed", self.plan.key, callback)
        return saved

    async def _add_to_repository(self) -> None:
        """Offer new pull-through content to the repository (on the ORM thread, like all
        ORM work; plugins implement the sync and async variants alike)."""
        repository = self.plan.repository
        if repository is not None and repository.PULL_THROUGH_SUPPORTED and self.saved:
            await db.run(save.offer, repository, self.saved)


class Follow:
    """A download another process leads, read through its spool file. ``reading`` is the
    readers lock this process holds shared while it has clients of it (None: not held)."""

    def __init__(self, plan: RemotePlan, spool: FollowedSpool,
                 reading: int | None = None) -> None:
        self.plan = plan
        self.spool = spool
        self.clients = 0
        self.reading = reading
