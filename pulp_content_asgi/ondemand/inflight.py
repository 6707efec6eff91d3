"""The downloads this process serves, by artifact: led here, or followed.

The first client asking for an artifact makes its process try to lead (advisory lock);
otherwise it follows the leader's spool. A download's life (:class:`Stage`):

    DOWNLOADING ──saved──► LINGERING ──LINGER s──► EXPIRED ──last client left──► CLEANED
         └─failed/streamed/cancelled─► FINISHED ─GRACE s─┘

A saved download stays joinable while LINGERING, so requests that resolved just before the
save read the finished spool instead of downloading again; a streamed or failed one is
never joined once finished (streamed content is fetched afresh). Files go when the last
client has left an EXPIRED download; GRACE leaves followers in other processes time to
finish reading.

Spool paths. A download led for every process (this process took the artifact's lock)
spools into the artifact's *shared* path (:func:`~.coordination.spool_path`), which
followers elsewhere compute from the key; it *holds* that path, and the lock, from its
start until CLEANED and its files are removed and its lock released. Two downloads of
this process never share a spool file: while an older download of the artifact holds
the path (FINISHED, or EXPIRED with a slow client still reading it), a new one leads
privately (a spool path of its own, no lock), so the older one's readers keep reading
its bytes and its clean-up removes its own files only. Other processes cannot take the
lock meanwhile (this process holds it), so they follow the older spool, find it over
before they resolved, and lead privately too (:class:`~.spool.Stale`). A private
download is saved like any other; only its collapsing stays within this process.

A download nobody receives any more is *unattended*: its last client here has left and no
other process follows it (none holds its readers lock, :mod:`.coordination`). With more
than ``CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES`` left to fetch (any amount, for streamed
content, which is never saved) it is cancelled (:meth:`.Fetch.cancel`): DOWNLOADING →
FINISHED, nothing saved. A leader checks this when its last client leaves, and then every
:data:`Inflight.WATCH` seconds while followers elsewhere still read.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable

from pulp_content_asgi import conf, metrics
from pulp_content_asgi.ondemand.coordination import coordinator, lock_id, readers_id, spool_path
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
    WATCH = 0.5  # seconds between checks for followers of an unattended download

    def __init__(self) -> None:
        self._entries: dict[str, Fetch | Follow] = {}
        self._stages: dict[int, Stage] = {}  # id(fetch) → stage, until cleaned
        self._fetches: dict[int, Fetch] = {}  # the same downloads
        #: Artifact key → this process's download that holds its shared spool path and
        #: lock, until both are let go (:meth:`_let_go_of`).
        self._holders: dict[str, Fetch] = {}
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
        while isinstance(entry, Fetch) and entry.abandoning and entry.task is not None:
            # Being cancelled: not to be joined; once it has stopped, a new download starts.
            await asyncio.wait({entry.task})
            if self._entries.get(plan.key) is entry:
                self._unlist(entry)
            entry = self._entries.get(plan.key)
        if isinstance(entry, Fetch) and entry.saved_at is not None \
                and plan.resolved_at > entry.saved_at:
            # Resolved after that download was saved, yet not stored: the artifact has
            # gone again since (reclaimed). Download afresh, in this process only.
            return self.lead_privately(plan), True
        if entry is None and plan.key in self._holders:
            # An older download here still holds the artifact's spool path (see above).
            return self.lead_privately(plan), True
        if entry is None:
            lock, leads, reading = await asyncio.to_thread(_try_to_lead, plan.key)
            entry = self._entries.get(plan.key)  # another client may have won meanwhile
            if entry is not None or plan.key in self._holders:
                # Won meanwhile, or it was this process's own download, finished meanwhile,
                # whose lock the re-entrant advisory lock gave us once more.
                await asyncio.to_thread(_let_go, lock if leads else None, reading)
                if entry is None:
                    return self.lead_privately(plan), True
            elif leads is False:
                entry = self._entries[plan.key] = Follow(plan, FollowedSpool(
                    spool_path(plan.key), plan.resolved_at, _leader_alive(lock)), reading)
            else:
                return self._start(plan, lock if leads else None), True
        if isinstance(entry, Fetch):
            entry.after_save.extend(plan.after_save)
        entry.clients += 1
        metrics.current().collapsed()  # another client's (or process's) download serves it
        return entry, False

    def lead_privately(self, plan: RemotePlan) -> Fetch:
        """A fresh download of this process alone (its own spool file, no lock): for a
        request that must not reuse the finished download that is still listed, or while
        an older download here still holds the artifact's shared spool path."""
        return self._start(plan, None)

    def _start(self, plan: RemotePlan, lock: int | None) -> Fetch:
        fetch = self._entries[plan.key] = Fetch(plan, lock)
        if lock is not None:
            self._holders[plan.key] = fetch
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
            self._watch(entry)
            self._cleanup(entry)

    def _watch(self, fetch: Fetch) -> None:
        """The download's last client here has left: from now on, cancel it as soon as
        nobody receives it and too much is left to fetch."""
        limit = conf.current().ondemand_unattended_bytes
        if fetch.clients > 0 or fetch.watched or self.stage(fetch) is not Stage.DOWNLOADING:
            return
        if fetch.saves and limit is None:
            return
        fetch.watched = True
        self._in_background(self._watching(fetch, limit if fetch.saves else 0))

    def _unattended(self, fetch: Fetch) -> bool:
        return fetch.clients == 0 and not fetch.downloaded \
            and self.stage(fetch) is Stage.DOWNLOADING

    async def _watching(self, fetch: Fetch, limit: int | None) -> None:
        try:
            while self._unattended(fetch):
                remaining = fetch.remaining()
                if limit is None or (remaining is not None and remaining <= limit):
                    return  # finishing it costs at most the bound: it is saved
                if fetch.lock is None:  # a private download: no other process reads it
                    await fetch.cancel(remaining, limit)
                    return
                readers = readers_id(fetch.plan.key)
                # Held exclusively, the readers lock says no other process follows this
                # download, and keeps a new follower out until the outcome is published.
                alone = await asyncio.to_thread(coordinator.try_lock, readers)
                if alone:
                    try:
                        if self._unattended(fetch):
                            await fetch.cancel(fetch.remaining(), limit)
                            return
                    finally:
                        await asyncio.to_thread(coordinator.unlock, readers)
                await asyncio.sleep(self.WATCH)  # followers read it (or no database now)
        finally:
            fetch.watched = False

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
            if entry.reading is not None:  # no client here reads it any more
                self._in_background(asyncio.to_thread(coordinator.unlock_shared,
                                                      entry.reading))
                entry.reading = None

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
        self._in_background(self._let_go_of(fetch))

    async def _let_go_of(self, fetch: Fetch) -> None:
        """A cleaned download's files, then its lock, then its hold on the spool path: in
        that order, so that a leader elsewhere never starts on a path still being removed,
        and no new download here takes the path before then (it leads privately)."""
        try:
            await fetch.spool.discard()  # its own files: no other download here uses them
        finally:
            try:
                if fetch.lock is not None:
                    await asyncio.to_thread(coordinator.unlock, fetch.lock)
            finally:
                if self._holders.get(fetch.plan.key) is fetch:
                    del self._holders[fetch.plan.key]

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


#: Tries to take a download's readers lock shared while its leader holds it exclusively
#: (only for as long as it takes to decide on cancelling it and say so).
SHARED_TRIES = (50, 0.02)


def _try_to_lead(key: str) -> tuple[int, bool | None, int | None]:
    """The download's lock (its id reads the spool area once per process: off the loop),
    :meth:`~.coordination.Coordinator.try_lock`'s answer for it, and the readers lock
    when this process is to follow (held shared, so the leader knows it is read here).

    The readers lock is taken first: a leader whose clients have all left then either
    sees this process reading, or has published that it cancelled the download by the
    time this process reads the spool's outcome.
    """
    readers = readers_id(key)
    tries, pause = SHARED_TRIES
    reading = coordinator.try_lock_shared(readers)
    while reading is False and tries > 0:
        time.sleep(pause)  # a leader is deciding to cancel it; it says so in a moment
        tries -= 1
        reading = coordinator.try_lock_shared(readers)
    lock = lock_id(key)
    leads = coordinator.try_lock(lock)
    if leads is not False and reading:
        coordinator.unlock_shared(readers)
        reading = False
    return lock, leads, readers if reading else None


def _let_go(lock: int | None, reading: int | None) -> None:
    """Release what :func:`_try_to_lead` took, when another client won meanwhile."""
    if lock is not None:
        coordinator.unlock(lock)
    if reading is not None:
        coordinator.unlock_shared(reading)


def _leader_alive(lock: int) -> Callable[[], Awaitable[bool]]:
    async def alive() -> bool:
        """Whether another process still holds ``lock`` (it is not free for us to take)."""
        acquired = await asyncio.to_thread(coordinator.try_lock, lock)
        if acquired:
            await asyncio.to_thread(coordinator.unlock, lock)
        return not acquired

    return alive


inflight = Inflight()
