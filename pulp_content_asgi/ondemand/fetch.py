"""The download behind a spool: remotes tried in order, bytes published once, then saved.

Uses each remote's own ``get_downloader()`` so plugin downloaders (token auth, ULN, SLES
tokens, client certificates, proxies) keep working. A remote that fails before the first
byte reached any client is skipped for the next one, as in pulpcore; after that the
failure can only be reported by cutting the responses short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from pulpcore.exceptions import DigestValidationError

from pulp_content_asgi import db, metrics
from pulp_content_asgi.bridge import downloads
from pulp_content_asgi.ondemand import save
from pulp_content_asgi.ondemand.coordination import coordinator, lock_id, spool_path
from pulp_content_asgi.ondemand.plan import Candidate, RemotePlan
from pulp_content_asgi.ondemand.spool import FollowedSpool, Spool, UpstreamError

log = logging.getLogger(__name__)



class Fetch:
    """One download for every client that wants the same artifact in this process."""

    def __init__(self, plan: RemotePlan, lock: int | None = None) -> None:
        self.plan = plan
        self.lock = lock  # held while this process leads the download for all processes
        os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
        if lock is not None:
            self.spool = Spool(spool_path(plan.key), shared=True)
        else:
            fd, path = tempfile.mkstemp(prefix="ondemand-", dir=settings.WORKING_DIRECTORY)
            os.close(fd)
            self.spool = Spool(path)
        self.task: asyncio.Task[None] | None = None
        self.saved: Any = None
        self.saved_at: float | None = None  # wall clock, once the save committed
        self.after_save: list[Any] = list(plan.after_save)
        self.clients = 0
        self.expired = False  # finished, and its linger or grace period is over
        self.cleaned = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"fetch {self.plan.key}")
        recorder = metrics.current()
        if recorder.enabled:
            recorder.downloads(+1)
            self.task.add_done_callback(lambda _: recorder.downloads(-1))

    async def _run(self) -> None:
        last: BaseException | None = None
        for candidate in self.plan.candidates:
            try:
                await self._fetch(candidate)
                return
            except downloads.SKIPPABLE as exc:
                last = exc
                if self.spool.size:
                    self._finish(exc)
                    return
                log.warning("Could not download remote artifact at '%s': %s",
                            candidate.remote_artifact.url, exc)
            except DigestValidationError as exc:
                await self._corrupt(candidate, exc)
                return
            except Exception as exc:
                log.exception("Fetching %s failed", candidate.remote_artifact.url)
                self._finish(exc)
                return
        self._finish(self._nothing_served(last))

    def _finish(self, error: BaseException | None = None) -> None:
        self.spool.finish(error)

    def _nothing_served(self, last: BaseException | None) -> UpstreamError:
        refusal = downloads.upstream_refusal(last)
        if self.plan.pull_through_url and refusal is not None:
            status, message = refusal
            return UpstreamError(status, "Error while fetching from upstream remote("
                                 f"{self.plan.pull_through_url}): {message}")
        return UpstreamError(404, "Not Found")

    async def _corrupt(self, candidate: Candidate, exc: DigestValidationError) -> None:
        cooldown = settings.REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN
        log.error(
            "Pulp tried streaming %r to the client, but it failed checksum validation (%s). "
            "The response was cut off and this remote artifact is ignored for %ss. If the "
            "remote is fixed, resync the repository; if it is permanently corrupted, replace "
            "the remote and resync.", candidate.remote_artifact.url, exc, cooldown)
        with contextlib.suppress(db.DatabaseUnavailable):
            await db.run(save.mark_failed, candidate.remote_artifact)
        self._finish(exc)

    async def _fetch(self, candidate: Candidate) -> None:
        remote_artifact = candidate.remote_artifact
        spool = self.spool
        attempt_offset = 0
        asked = time.monotonic()
        answered = False

        def first_byte() -> None:
            nonlocal answered
            if not answered:
                answered = True
                metrics.current().upstream(time.monotonic() - asked, ok=True)

        async def on_headers(headers: Mapping[str, str]) -> None:
            nonlocal attempt_offset
            attempt_offset = 0  # a retry starts again from the first byte
            first_byte()
            spool.set_headers(headers)

        downloader = remote_artifact.remote.get_downloader(
            remote_artifact=remote_artifact, headers_ready_callback=on_headers)
        keep = downloader.handle_data

        async def handle_data(data: bytes) -> None:
            nonlocal attempt_offset
            first_byte()
            if candidate.save:
                await keep(data)
            spool.set_headers({})  # downloaders without a headers callback (file://)
            start, attempt_offset = attempt_offset, attempt_offset + len(data)
            if attempt_offset > spool.size:  # retries re-send bytes already published
                await spool.write(data[max(spool.size - start, 0):])

        downloader.handle_data = handle_data
        if not candidate.save:
            async def finalize() -> None:  # streamed: nothing kept, nothing validated
                return None

            downloader.finalize = finalize
        completed = False
        try:
            result = await downloader.run(
                extra_data={"disable_retry_list": (DigestValidationError,)})
            completed = True
        finally:
            if not answered:
                metrics.current().upstream(time.monotonic() - asked, ok=False)
            if not completed and getattr(downloader, "path", None):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(downloader.path)
            if hasattr(downloader, "session"):
                await downloader.session.close()
        if candidate.save:
            self.saved = await db.run(self._save, result, remote_artifact,
                                      list(self.after_save))
            self.saved_at = time.time()
            await self._add_to_repository()
        self._finish()

    def _save(self, result: Any, remote_artifact: Any, after_save: list[Any]) -> Any:
        """Save, then the follow-ups (caching the response), in one transaction on the ORM
        thread: whoever sees the saved artifact also finds its cache entry, so the request
        after this download is a cache hit whichever worker answers it."""
        with transaction.atomic():
            saved = save.save(result.artifact_attributes, result.path, remote_artifact,
                              self.plan.hook_request)
            for callback in after_save:
                try:
                    callback(saved)
                except Exception:  # the artifact is saved; only the follow-up failed
                    log.exception("After saving %s, %r failed", self.plan.key, callback)
        return saved

    async def _add_to_repository(self) -> None:
        """Offer new pull-through content to the repository (on the ORM thread, like all
        ORM work; plugins implement the sync and async variants alike)."""
        repository = self.plan.repository
        if repository is not None and repository.PULL_THROUGH_SUPPORTED and self.saved:
            await db.run(repository.pull_through_add_content, self.saved)


class Follow:
    """A download another process leads, read through its spool file."""

    def __init__(self, plan: RemotePlan, lock: int) -> None:
        self.plan = plan
        self.spool = FollowedSpool(spool_path(plan.key), lock, since=plan.resolved_at)
        self.clients = 0


class Inflight:
    """The downloads this process serves, by artifact: led here, or followed.

    The first client asking for an artifact makes its process try to lead (advisory
    lock); otherwise it follows the leader's spool. A finished download whose artifact
    was saved stays joinable for ``LINGER`` seconds, so requests that resolved just before
    the save read the finished spool instead of downloading again; a streamed one is never
    joined once finished (streamed content is fetched afresh). Files go when the last
    client has left and, for followers in other processes, ``GRACE`` seconds later.
    """

    LINGER = 5.0
    GRACE = 2.0

    def __init__(self) -> None:
        self._entries: dict[str, Fetch | Follow] = {}

    async def join(self, plan: RemotePlan) -> tuple[Fetch | Follow, bool]:
        """The download for this artifact, and whether this request started it; call
        :meth:`leave` when done with it."""
        entry = self._entries.get(plan.key)
        if isinstance(entry, Fetch) and entry.saved_at is not None \
                and plan.resolved_at > entry.saved_at:
            # Resolved after that download was saved, yet not stored: the artifact has
            # gone again since (reclaimed). Download afresh, in this process only.
            return self.lead_privately(plan), True
        if entry is None:
            lock = lock_id(plan.key)
            leads = await asyncio.to_thread(coordinator.try_lock, lock)
            entry = self._entries.get(plan.key)  # another client may have won meanwhile
            if entry is not None:
                if leads:
                    await asyncio.to_thread(coordinator.unlock, lock)
            elif leads is False:
                entry = self._entries[plan.key] = Follow(plan, lock)
            else:
                return self._start(plan, lock if leads else None), True
        if isinstance(entry, Fetch):
            entry.after_save.extend(plan.after_save)
        entry.clients += 1
        metrics.current().collapsed()  # another client's (or process's) download serves it
        return entry, False

    def lead_privately(self, plan: RemotePlan) -> Fetch:
        """A fresh download of this process alone (its own spool file, no lock): for a
        request that must not reuse the finished download that is still listed."""
        return self._start(plan, None)

    def _start(self, plan: RemotePlan, lock: int | None) -> Fetch:
        fetch = self._entries[plan.key] = Fetch(plan, lock)
        fetch.start()
        assert fetch.task is not None
        fetch.task.add_done_callback(lambda _: self._finished(fetch))
        fetch.clients += 1
        return fetch

    def leave(self, entry: Fetch | Follow) -> None:
        entry.clients -= 1
        if isinstance(entry, Follow) and entry.clients == 0:
            self._unlist(entry)
        self._cleanup(entry)

    def abandon(self, entry: Fetch | Follow) -> None:
        """Drop a followed download whose leader vanished (the next join leads)."""
        entry.clients -= 1
        self._unlist(entry)

    def _unlist(self, entry: Fetch | Follow) -> None:
        if self._entries.get(entry.plan.key) is entry:
            del self._entries[entry.plan.key]

    def _finished(self, fetch: Fetch) -> None:
        loop = asyncio.get_running_loop()
        if fetch.saved is None:
            self._unlist(fetch)
        else:
            loop.call_later(self.LINGER, self._unlist, fetch)
        loop.call_later(self.LINGER if fetch.saved is not None else self.GRACE,
                        self._expire, fetch)

    def _expire(self, fetch: Fetch) -> None:
        fetch.expired = True
        self._cleanup(fetch)

    def _cleanup(self, entry: Fetch | Follow) -> None:
        if not isinstance(entry, Fetch) or not entry.expired or entry.clients > 0 \
                or entry.cleaned:
            return
        entry.cleaned = True
        self._unlist(entry)
        current = self._entries.get(entry.plan.key)
        if not (isinstance(current, Fetch) and current.spool.path == entry.spool.path):
            entry.spool.discard()  # unless a newer download of this process took the path
        if entry.lock is not None:
            asyncio.get_running_loop().run_in_executor(None, coordinator.unlock, entry.lock)

    def __len__(self) -> int:
        return len(self._entries)


inflight = Inflight()
