"""The file and the digests of a download that is saved, computed off the event loop.

pulpcore's downloader writes every chunk to its file and updates every digest of
``ALLOWED_CONTENT_CHECKSUMS`` (sha224, sha256, sha384 and sha512 by default) in
``BaseDownloader.handle_data``: the digests run in its thread pool, but the event loop
waits for them (``concurrent.futures.wait``), and ``finalize`` flushes and fsyncs the file
there too. On a 2-core machine four digests of 1 GiB take seconds of CPU, during which
the worker answered nobody and the bytes already downloaded waited for the digests.

:class:`Digests` does the same work in *lanes*: one per digest and one for the file, each
fed the chunks in order on a thread of its own pool (hashlib releases the GIL for updates
above 2 KiB, so the digests run in parallel on every core). Chunks are gathered to at
least :data:`GATHER` bytes, and a lane takes all those waiting in one hop. A fast lane
runs ahead of a slow one, so no core waits for the slowest digest at each chunk. Memory
stays bounded: once :data:`WINDOW` bytes are accepted that some lane has not consumed,
:meth:`Digests.wait_room` holds the download (and so the upstream connection: TCP
back-pressure) until that lane catches up.

The file is made durable before it is saved, as pulpcore's ``finalize`` does (``fsync``),
but without leaving all of it for the end: every :data:`WRITEBACK` bytes written, a
``fdatasync`` runs on a thread of its own while writing goes on, so the final ``fsync``
(which the last bytes sent to clients wait for) only has the tail to flush. Left to the
end, a 1 GiB file took seconds to reach the disk.

The digests and size are then handed to pulpcore's downloader (see
:meth:`Digests.finish`), whose own ``validate_digests``/``validate_size`` and
``artifact_attributes`` decide, exactly as they do after pulpcore's ``finalize``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from pulpcore.app import pulp_hashlib
from pulpcore.app.models import Artifact

#: Bytes a download may be ahead of its slowest lane (digest or file write) before it
#: waits: the memory one download holds for hashing, at most, plus one chunk.
WINDOW = 8 << 20
#: Bytes gathered before they go to the lanes: a downloader hands over what the socket had
#: (aiohttp: often 64 KiB), and every hop of a lane costs the event loop a wake-up, so
#: small chunks are joined into one of at least this size first.
GATHER = 1 << 20
#: Bytes written between two background ``fdatasync`` of a download's file.
WRITEBACK = 32 << 20
#: The name of the threads that compute digests and write downloads (``ondemand-digest_N``).
THREAD_NAME = "ondemand-digest"

_pool: ThreadPoolExecutor | None = None
_writeback: ThreadPoolExecutor | None = None


class Hasher(Protocol):
    """What :mod:`hashlib` objects offer (``pulp_hashlib.new`` makes them)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def pool() -> ThreadPoolExecutor:
    """The process's threads for digests and download files: one per configured digest,
    plus one for the file, so one download's lanes all run at once (more threads could
    not hash faster than the cores; concurrent downloads share them)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=len(Artifact.DIGEST_FIELDS) + 1,
                                   thread_name_prefix=THREAD_NAME)
    return _pool


def writeback_pool() -> ThreadPoolExecutor:
    """The thread that flushes download files to disk while they are written."""
    global _writeback
    if _writeback is None:
        _writeback = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ondemand-writeback")
    return _writeback


class _File:
    """The download's file, written on a lane's thread, flushed to disk in the background
    every :data:`WRITEBACK` bytes (one ``fdatasync`` at a time)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.unsynced = 0
        self.syncing: Future[None] | None = None

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.unsynced += len(chunk)
        if self.unsynced >= WRITEBACK and (self.syncing is None or self.syncing.done()):
            if self.syncing is not None:
                self.syncing.result()  # raises a failed flush's error (EIO, ENOSPC)
            self.file.flush()
            self.unsynced = 0
            self.syncing = writeback_pool().submit(os.fdatasync, self.file.fileno())

    def close(self, sync: bool) -> None:
        """Close (after any flush under way: its descriptor must stay this file's);
        with ``sync``, first make every byte durable, as pulpcore's ``finalize`` does,
        raising what failed (``OSError``); without, the file is given up: no error."""
        try:
            if self.syncing is not None:
                wait([self.syncing])
            if sync:
                if self.syncing is not None:
                    self.syncing.result()
                self.file.flush()
                os.fsync(self.file.fileno())
        finally:
            if sync:
                self.file.close()
            else:
                with contextlib.suppress(OSError):  # unwritten bytes of a file given up
                    self.file.close()


def _feed(consume: Callable[[bytes], object], batch: list[bytes]) -> None:
    for chunk in batch:
        consume(chunk)


class _Lane:
    """Hands chunks, in order, to ``consume`` (a digest's ``update``, the file's
    ``write``) on a pool thread, all those waiting in one hop; ``taken`` counts the bytes
    consumed. ``changed`` is called after every hop and when the lane ends."""

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


def _create(url: str) -> IO[bytes]:
    """The download's file in ``WORKING_DIRECTORY``, named as pulpcore's downloader names
    it (a random prefix, then the URL's file name when it is a legal one)."""
    name = urlsplit(url).path.split("/")[-1]
    suffix = "-" + name if name and len(name) <= 243 else None
    directory = str(settings.WORKING_DIRECTORY)
    os.makedirs(directory, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=directory, suffix=suffix, delete=False)


class Digests:
    """The file and digests of one attempt of a download: :meth:`put` every chunk, then
    :meth:`finish`; or :meth:`abandon` (a retry starts afresh, a failure keeps nothing).

    Errors of a lane (``OSError`` from writing the file: a full ``WORKING_DIRECTORY``)
    are raised by the next :meth:`wait_room` or by :meth:`finish`.
    """

    def __init__(self, file: IO[bytes], hashers: dict[str, Hasher],
                 declared: dict[str, Hasher] | None = None) -> None:
        self.file = file
        self._file = _File(file)
        self.path: str = file.name
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
            self._file.write, *(hasher.update for hasher in hashers.values()),
            *(hasher.update for hasher in self.declared.values()))
        self.lanes = [_Lane(consume, self._notify) for consume in consumers]
        self._closing: asyncio.Future[Any] | None = None

    @classmethod
    async def open(cls, url: str, declared: Iterable[str] = ()) -> Digests:
        """A new file for a download of ``url`` (created off the loop) and a hasher for
        each of ``Artifact.DIGEST_FIELDS`` (``ALLOWED_CONTENT_CHECKSUMS``), as pulpcore's
        ``_ensure_writer_has_open_file`` makes them; plus one for each algorithm of
        ``declared`` (``hashlib`` names: md5, sha1) that is not among them."""
        file = await asyncio.get_running_loop().run_in_executor(pool(), _create, url)
        hashers = {name: pulp_hashlib.new(name) for name in Artifact.DIGEST_FIELDS}
        return cls(file, hashers, {name: hashlib.new(name) for name in declared
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
        """Queue ``data`` for the file and every digest (returns at once); they get it
        once :data:`GATHER` bytes are gathered, or at :meth:`finish`."""
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
            if self.size - min(lane.taken for lane in self.lanes) <= WINDOW:
                return
            await self._changed.wait()

    async def finish(self) -> tuple[dict[str, Hasher], int]:
        """Wait for every lane, then flush, fsync and close the file (off the loop);
        returns the hashers and the size. Raises what a lane raised (the file is closed
        anyway)."""
        self._dispatch()
        for lane in self.lanes:
            lane.close()
        try:
            # Not gather: a cancelled gather cancels the lanes' tasks while their threads
            # go on writing the file, and abandon would then close it under them.
            await asyncio.wait([lane.task for lane in self.lanes],
                               return_when=asyncio.FIRST_EXCEPTION)
            self._raise_failure()
            if any(lane.task.cancelled() for lane in self.lanes):  # the loop is closing
                raise asyncio.CancelledError
        except BaseException:
            self.abandon()
            raise
        self._closing = asyncio.get_running_loop().run_in_executor(
            pool(), self._file.close, True)
        await self._closing
        return self.hashers, self.size

    def abandon(self) -> None:
        """Stop: chunks not consumed are dropped, and the file is closed once the lanes'
        threads are done with it (removing it is the caller's). Returns at once."""
        if self._closing is not None:
            return
        self._gathered, self._gathered_size = [], 0
        for lane in self.lanes:
            lane.close(drop=True)
        self._closing = asyncio.ensure_future(self._close_after_lanes())

    async def _close_after_lanes(self) -> None:
        await asyncio.gather(*(lane.task for lane in self.lanes), return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(pool(), self._file.close, False)

    async def closed(self) -> None:
        """Until :meth:`abandon`'s closing is over (for tests and orderly shutdowns)."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
