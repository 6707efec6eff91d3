"""The downloads this process serves, by artifact: led here, or followed.

The first client asking for an artifact makes its process try to lead (advisory lock);
otherwise it follows the leader's spool. A download's life (:class:`Stage`):

    DOWNLOADING ──saved──► LINGERING ──LINGER s──► EXPIRED ──last client left──► CLEANED
         └──failed or streamed──► FINISHED ──GRACE s──┘

A saved download stays joinable while LINGERING, so requests that resolved just before the
save read the finished spool instead of downloading again; a streamed or failed one is
never joined once finished (streamed content is fetched afresh). Files go when the last
client has left an EXPIRED download; GRACE leaves followers in other processes time to
finish reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable

from pulp_content_asgi import metrics
from pulp_content_asgi.ondemand.coordination import coordinator, lock_id, spool_path
from pulp_content_asgi.ondemand.fetch import Fetch, Follow
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.spool import FollowedSpool

log = logging.getLogger(__name__)


class Stage(enum.Enum):
    DOWNLOADING = "downloading"
    LINGERING = "lingering"  # saved; joinable for LINGER seconds
    FINISHED = "finished"  # failed or streamed; never joined again
    EXPIRED = "expired"  # its files go when the last client leaves
    CLEANED = "cleaned"


class Inflight:
    """This process's downloads, by artifact key (one instance per process)."""

    LINGER = 5.0
    GRACE = 2.0

    def __init__(self) -> None:
        self._entries: dict[str, Fetch | Follow] = {}
        self._stages: dict[int, Stage] = {}  # id(fetch) → stage, until cleaned
        self._fetches: dict[int, Fetch] = {}  # the same downloads
        self._background: set[asyncio.Future[object]] = set()

    def __len__(self) -> int:
        """How many downloads are listed (joinable or followed)."""
        return len(self._entries)

    def stage(self, fetch: Fetch) -> Stage:
        return self._stages.get(id(fetch), Stage.CLEANED)

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
            lock, leads = await asyncio.to_thread(_try_to_lead, plan.key)
            entry = self._entries.get(plan.key)  # another client may have won meanwhile
            if entry is not None:
                if leads:
                    await asyncio.to_thread(coordinator.unlock, lock)
            elif leads is False:
                entry = self._entries[plan.key] = Follow(plan, FollowedSpool(
                    spool_path(plan.key), plan.resolved_at, _leader_alive(lock)))
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
        self._stages[id(fetch)] = Stage.DOWNLOADING
        self._fetches[id(fetch)] = fetch
        fetch.start().add_done_callback(lambda _: self._finished(fetch))
        fetch.clients += 1
        return fetch

    def leave(self, entry: Fetch | Follow) -> None:
        """A client is done with the download (sent, cut, or never started)."""
        entry.clients -= 1
        if isinstance(entry, Follow):
            if entry.clients == 0:
                self._unlist(entry)
        else:
            self._cleanup(entry)

    def abandon(self, entry: Fetch | Follow) -> None:
        """Drop a download whose leader vanished or that must not be replayed (the next
        join leads)."""
        entry.clients -= 1
        self._unlist(entry)

    def _unlist(self, entry: Fetch | Follow) -> None:
        if self._entries.get(entry.plan.key) is entry:
            del self._entries[entry.plan.key]
        if isinstance(entry, Follow) and entry.clients <= 0:
            entry.spool.close()

    def _finished(self, fetch: Fetch) -> None:
        loop = asyncio.get_running_loop()
        if fetch.saved is not None:
            self._stages[id(fetch)] = Stage.LINGERING
            loop.call_later(self.LINGER, self._expire, fetch)
        else:
            self._stages[id(fetch)] = Stage.FINISHED
            self._unlist(fetch)
            loop.call_later(self.GRACE, self._expire, fetch)

    def _expire(self, fetch: Fetch) -> None:
        if id(fetch) not in self._fetches:  # cleaned already (the worker shut down)
            return
        self._unlist(fetch)
        self._stages[id(fetch)] = Stage.EXPIRED
        self._cleanup(fetch)

    def _cleanup(self, fetch: Fetch) -> None:
        if self.stage(fetch) is not Stage.EXPIRED or fetch.clients > 0:
            return
        del self._stages[id(fetch)]  # CLEANED
        del self._fetches[id(fetch)]
        current = self._entries.get(fetch.plan.key)
        if not (isinstance(current, Fetch) and current.spool.path == fetch.spool.path):
            self._in_background(fetch.spool.discard())  # unless a newer download took it
        if fetch.lock is not None:
            self._in_background(asyncio.to_thread(coordinator.unlock, fetch.lock))

    async def shutdown(self) -> None:
        """The worker stops: downloads still running are cancelled (nothing is saved
        half-way: the save is one transaction after the download), and every spool file
        and lock of this process goes, so no spool outlives its worker."""
        for entry in list(self._entries.values()):
            entry.clients = 0
            self._unlist(entry)
        fetches = list(self._fetches.values())
        for fetch in fetches:
            if fetch.task is not None and not fetch.task.done():
                fetch.task.cancel()
        for fetch in fetches:
            if fetch.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch.task
            self._stages[id(fetch)] = Stage.EXPIRED
            fetch.clients = 0
            self._cleanup(fetch)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _in_background(self, work: Awaitable[object]) -> None:
        """Clean-up nobody waits for: kept referenced until done, failures logged."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._done_in_background)

    def _done_in_background(self, task: asyncio.Future[object]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("On-demand clean-up failed: %s", task.exception())


def _try_to_lead(key: str) -> tuple[int, bool | None]:
    """The download's lock (its id reads the spool area once per process: off the loop)
    and :meth:`~.coordination.Coordinator.try_lock`'s answer for it."""
    lock = lock_id(key)
    return lock, coordinator.try_lock(lock)


def _leader_alive(lock: int) -> Callable[[], Awaitable[bool]]:
    async def alive() -> bool:
        """Whether another process still holds ``lock`` (it is not free for us to take)."""
        acquired = await asyncio.to_thread(coordinator.try_lock, lock)
        if acquired:
            await asyncio.to_thread(coordinator.unlock, lock)
        return not acquired

    return alive


inflight = Inflight()
