"""The digests of a download that is saved, computed off the event loop.

pulpcore's downloader writes every chunk to its file and updates every digest of
``ALLOWED_CONTENT_CHECKSUMS`` (sha224, sha256, sha384 and sha512 by default) in
``BaseDownloader.handle_data``: the digests run in its thread pool, but the event loop
waits for them (``concurrent.futures.wait``), and ``finalize`` flushes and fsyncs the file
there too. On a 2-core machine four digests of 1 GiB take seconds of CPU, during which
the worker answered nobody and the bytes already downloaded waited for the digests.

:class:`Digests` does the same work in *lanes*: one per digest, each fed the chunks in
order on a thread of its own pool (hashlib releases the GIL for updates above 2 KiB, so
the digests run in parallel on every core). Chunks are gathered to at least
:data:`GATHER` bytes, and a lane takes all those waiting in one hop. A fast lane runs
ahead of a slow one, so no core waits for the slowest digest at each chunk. Memory stays
bounded: once :data:`WINDOW` bytes are accepted that some lane has not consumed,
:meth:`Digests.wait_room` holds the download (and so the upstream connection: TCP
back-pressure) until that lane catches up.

The file is not written here: the download's spool is the file that is saved
(:meth:`~.spool.Spool.keep`), so its bytes are written once.

The digests and size are then handed to pulpcore's downloader (see
:meth:`~.fetch.SpoolingDownloader.finalize`), whose own ``validate_digests``/
``validate_size`` and ``artifact_attributes`` decide, exactly as they do after
pulpcore's ``finalize``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pulpcore.app import pulp_hashlib
from pulpcore.app.models import Artifact

#: Bytes a download may be ahead of its slowest digest before it waits: the memory one
#: download holds for hashing, at most, plus one chunk.
WINDOW = 8 << 20
#: Bytes gathered before they go to the lanes: a downloader hands over what the socket had
#: (aiohttp: often 64 KiB), and every hop of a lane costs the event loop a wake-up, so
#: small chunks are joined into one of at least this size first.
GATHER = 1 << 20
#: The name of the threads that compute digests (``ondemand-digest_N``).
THREAD_NAME = "ondemand-digest"

_pool: ThreadPoolExecutor | None = None


class Hasher(Protocol):
    """What :mod:`hashlib` objects offer (``pulp_hashlib.new`` makes them)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def pool() -> ThreadPoolExecutor:
    """The process's threads for digests: one per configured digest, so one download's
    lanes all run at once (more threads could not hash faster than the cores; concurrent
    downloads share them)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=len(Artifact.DIGEST_FIELDS),
                                   thread_name_prefix=THREAD_NAME)
    return _pool


def _feed(consume: Callable[[bytes], object], batch: list[bytes]) -> None:
    for chunk in batch:
        consume(chunk)


class _Lane:
    """Hands chunks, in order, to ``consume`` (a digest's ``update``) on a pool thread,
    all those waiting in one hop; ``taken`` counts the bytes consumed. ``changed`` is
    called after every hop and when the lane ends."""

    def __init__(self, consume: Callable[[bytes], object], changed: Callable[[], None]
                 ) -> None:
        self.consume = consume
        self.changed = changed
        self.waiting: list[bytes] = []
        self.taken = 0
        self.closed = False
        self._wake = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    def put(self, chunk: bytes) -> None:
        self.waiting.append(chunk)
        self._wake.set()

    def close(self, *, drop: bool = False) -> None:
        """No more chunks: end once those waiting are consumed (``drop``: dropped)."""
        if drop:
            self.waiting = []
        self.closed = True
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.waiting:
                    batch, self.waiting = self.waiting, []
                    await loop.run_in_executor(pool(), _feed, self.consume, batch)
                    self.taken += sum(len(chunk) for chunk in batch)
                    self.changed()
                if self.closed:
                    return
        finally:
            self.changed()


class Digests:
    """The digests of one attempt of a download: :meth:`put` every chunk, then
    :meth:`finish`; or :meth:`abandon` (a retry starts afresh, a failure keeps nothing).

    Errors of a lane (a hasher's) are raised by the next :meth:`wait_room` or by
    :meth:`finish`. Must be made on the event loop (its lanes are tasks).
    """

    def __init__(self, hashers: dict[str, Hasher],
                 declared: dict[str, Hasher] | None = None) -> None:
        self.hashers = hashers
        #: Digests the upstream declares that pulpcore does not compute (a Maven ``.sha1``
        #: sidecar): lanes like the others, kept apart from ``hashers`` (which become the
        #: artifact's digests), so checking them needs no second read of the file.
        self.declared = declared or {}
        self.size = 0  # bytes put
        self._gathered: list[bytes] = []  # put, not yet handed to the lanes
        self._gathered_size = 0
        self._changed = asyncio.Event()
        consumers: Iterable[Callable[[bytes], object]] = (
            *(hasher.update for hasher in hashers.values()),
            *(hasher.update for hasher in self.declared.values()))
        self.lanes = [_Lane(consume, self._notify) for consume in consumers]
        self._abandoned = False

    @classmethod
    def configured(cls, declared: Iterable[str] = ()) -> Digests:
        """A hasher for each of ``Artifact.DIGEST_FIELDS`` (``ALLOWED_CONTENT_CHECKSUMS``),
        as pulpcore's ``_ensure_writer_has_open_file`` makes them; plus one for each
        algorithm of ``declared`` (``hashlib`` names: md5, sha1) that is not among them."""
        hashers = {name: pulp_hashlib.new(name) for name in Artifact.DIGEST_FIELDS}
        return cls(hashers, {name: hashlib.new(name) for name in declared
                             if name not in hashers})

    def declared_digests(self) -> dict[str, str]:
        """The hex digests of :attr:`declared` (after :meth:`finish`)."""
        return {name: hasher.hexdigest() for name, hasher in self.declared.items()}

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _raise_failure(self) -> None:
        for lane in self.lanes:
            if lane.task.done() and not lane.task.cancelled() and lane.task.exception():
                raise lane.task.exception()  # type: ignore[misc]

    def put(self, data: bytes) -> None:
        """Queue ``data`` for every digest (returns at once); they get it once
        :data:`GATHER` bytes are gathered, or at :meth:`finish`."""
        if data:
            self.size += len(data)
            self._gathered.append(data)
            self._gathered_size += len(data)
            if self._gathered_size >= GATHER:
                self._dispatch()

    def _dispatch(self) -> None:
        if not self._gathered:
            return
        gathered = self._gathered
        chunk = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        self._gathered, self._gathered_size = [], 0
        for lane in self.lanes:
            lane.put(chunk)

    async def wait_room(self) -> None:
        """Until the slowest lane is at most :data:`WINDOW` bytes behind."""
        while True:
            self._raise_failure()
            if not self.lanes or self.size - min(lane.taken for lane in self.lanes) <= WINDOW:
                return
            await self._changed.wait()

    async def finish(self) -> tuple[dict[str, Hasher], int]:
        """Wait for every lane; returns the hashers and the size (bytes put). Raises what
        a lane raised."""
        self._dispatch()
        for lane in self.lanes:
            lane.close()
        try:
            # Not gather: a cancelled gather would cancel the lanes' tasks while their
            # threads go on hashing.
            if self.lanes:
                await asyncio.wait([lane.task for lane in self.lanes],
                                   return_when=asyncio.FIRST_EXCEPTION)
            self._raise_failure()
            if any(lane.task.cancelled() for lane in self.lanes):  # the loop is closing
                raise asyncio.CancelledError
        except BaseException:
            self.abandon()
            raise
        return self.hashers, self.size

    def abandon(self) -> None:
        """Stop: chunks not consumed are dropped (a lane's thread finishes the batch it
        holds). Returns at once."""
        if self._abandoned:
            return
        self._abandoned = True
        self._gathered, self._gathered_size = [], 0
        for lane in self.lanes:
            lane.close(drop=True)

    async def closed(self) -> None:
        """Until every lane has ended (for tests and orderly shutdowns)."""
        await asyncio.gather(*(lane.task for lane in self.lanes), return_exceptions=True)
