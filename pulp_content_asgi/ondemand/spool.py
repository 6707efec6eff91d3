"""A file being downloaded that any number of readers follow while it grows.

Two kinds of spool share one reader loop (:func:`read`): a :class:`Spool` this process
writes, and a :class:`FollowedSpool` that another process (the leader) writes, which one
poller per process watches for all of its readers. Both expose the same progress: the
bytes written so far, the upstream headers, and the outcome. No file I/O runs on the
event loop: files are created, written, read and polled through the default executor.

The spool of a download that is saved is also the file that is saved (:meth:`Spool.keep`),
so the bytes are written once, not once for clients and once more for the artifact
(measured side by side on the 2-core VM, a cold 1 GiB download: 0.3 CPU-s less, 9 % more
throughput; bench/results/optimisations.md). Such a spool is flushed to disk in
the background while it grows (every :data:`WRITEBACK` bytes a ``fdatasync`` runs on a
thread of its own), so the final ``fsync`` (which pulpcore's ``finalize`` does, and the
last bytes sent to clients wait for) only has the tail to flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import IO, Any
from urllib.parse import urlsplit

from pulpcore.exceptions import DigestValidationError, SizeValidationError

from pulp_content_asgi.serving.response import BodyFailed

#: Bytes written to a durable spool between two background ``fdatasync`` calls.
WRITEBACK = 32 << 20

_writeback: ThreadPoolExecutor | None = None

#: What an operator can do about a spool file that went or changed under its readers.
_KEEP_AWAY = ("keep other programs (temporary-file cleaners) away from the ondemand-* "
              "files in WORKING_DIRECTORY; the client may retry")


class SpoolFailed(BodyFailed):
    """The download behind a spool failed, or its file cannot be read: readers must not
    end the response cleanly. The message says why and what the operator can do."""


class UpstreamError(Exception):
    """The download failed before sending a byte; ``status`` is what to answer (404 unless a
    pull-through upstream answered an HTTP error, 503 when this server cannot store it),
    with ``headers`` (e.g. ``Retry-After``)."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def refusal(error: BaseException | None) -> str:
    """What a client that waited for a download which then failed is told (a ``502``):
    the kind of failure only. The server log has the upstream URL and the digests, and
    says whether the remote artifact is now cooled down (then the next request does not
    download it again)."""
    what = ("its bytes are not the ones promised for it"
            if isinstance(error, (DigestValidationError, SizeValidationError))
            else "the transfer failed")
    return (f"The download of this content from its upstream failed: {what}. Nothing "
            "was saved; the server log has the details.")


class LeaderGone(Exception):
    """The process leading a download vanished before finishing it."""


class Abandoned(Exception):
    """The download was cancelled because no client was receiving it and more than
    ``CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES`` were left to fetch; nothing is saved."""


class Stale(Exception):
    """The followed download finished before the request resolved: a failure that must
    not be replayed, or a save the database no longer shows (reclaimed since)."""


# -- the sidecar: headers and outcome of a shared spool, for other processes ------------
def write_meta(path: str, meta: dict[str, Any]) -> None:
    """Replace the sidecar atomically (readers never see half a file)."""
    temporary = f"{path}.json.tmp"
    with open(temporary, "w") as out:
        json.dump(meta, out)
    os.replace(temporary, f"{path}.json")


def read_meta(path: str) -> dict[str, Any]:
    """The sidecar's contents; empty while there is none (or it is being replaced)."""
    try:
        with open(f"{path}.json") as meta:
            return dict(json.load(meta))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def remove(path: str) -> None:
    """Remove a spool and its sidecar."""
    for leftover in (path, f"{path}.json", f"{path}.json.tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def writeback_pool() -> ThreadPoolExecutor:
    """The thread that flushes durable spools to disk while they are written."""
    global _writeback
    if _writeback is None:
        _writeback = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ondemand-writeback")
    return _writeback


def download_name(url: str) -> str:
    """A new name in ``WORKING_DIRECTORY`` for the file a download of ``url`` saves, made
    as pulpcore's downloader makes its file's: a random prefix (here 128 bits: names are
    not created exclusively by the kernel's ``mkstemp``), then the URL's file name when
    the whole stays a legal one (255 bytes)."""
    from django.conf import settings

    prefix = f"tmp{uuid.uuid4().hex}"
    name = urlsplit(url).path.split("/")[-1]
    suffix = "-" + name if name and len(prefix) + 1 + len(name.encode()) <= 255 else ""
    return os.path.join(str(settings.WORKING_DIRECTORY), prefix + suffix)


class _File:
    """A spool's file, written by its one writer; with ``durable``, flushed to disk in the
    background every :data:`WRITEBACK` bytes (one ``fdatasync`` at a time)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.durable = False
        self.unsynced = 0
        self.syncing: Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()  # readers read the file, not this buffer
        if not self.durable:
            return
        self.unsynced += len(data)
        if self.unsynced >= WRITEBACK and (self.syncing is None or self.syncing.done()):
            if self.syncing is not None:
                self.syncing.result()  # raises a failed flush's error (EIO, ENOSPC)
            self.unsynced = 0
            self.syncing = writeback_pool().submit(os.fdatasync, self.file.fileno())

    def sync(self) -> None:
        """Every byte durable (after any flush under way); raises what failed (OSError)."""
        if self.syncing is not None:
            wait([self.syncing])
            self.syncing.result()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close, after any flush under way (its descriptor must stay this file's)."""
        if self.syncing is not None:
            wait([self.syncing])
        self.file.close()


def _link(path: str, fd: int, name: str) -> None:
    """Give the open file ``fd`` (written at ``path``) the second name ``name``: a hard
    link, checked to be that very file (another worker may have taken ``path`` over for
    a new spool meanwhile), else a copy of its bytes read through ``fd`` (hard links
    refused, another file at ``path``). Never replaces a file at ``name``: raises
    ``FileExistsError``."""
    mine = os.fstat(fd)
    try:
        os.link(path, name)
    except FileExistsError:
        raise
    except OSError:  # EPERM, EXDEV, no hard links here, the path gone
        pass
    else:
        linked = os.stat(name)
        if (linked.st_dev, linked.st_ino) == (mine.st_dev, mine.st_ino):
            return
        os.unlink(name)  # another download's file: ours is copied instead
    with open(name, "xb") as copy:
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            copy.write(chunk)
            offset += len(chunk)
        copy.flush()
        os.fsync(copy.fileno())


class _Progress:
    """What readers of a spool wait on: size, headers, outcome, and a change signal."""

    path: str

    def __init__(self) -> None:
        self.size = 0
        self.headers: Mapping[str, str] | None = None
        self.error: BaseException | None = None
        self.done = False
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Until the progress changes."""
        await self._changed.wait()

    async def wait_done(self) -> bool:
        """Until the download is over; True when it completed (and was verified)."""
        while not self.done:
            if self.error is not None:
                return False
            await self.changed()
        return True

    async def wait_headers(self) -> Mapping[str, str]:
        """The upstream headers; raises the download's error if it failed before them."""
        while self.headers is None:
            if self.error is not None:
                raise self.error
            await self.changed()
        return self.headers

    def read(self, offset: int, length: int | None, step: int, hold: int = 0
             ) -> AsyncIterator[bytes]:
        return read(self, offset, length, step, hold)


class Spool(_Progress):
    """One writer (this process's download) appends; readers follow.

    The writer calls :meth:`open` (off the loop) before anything else; readers only start
    reading once headers are published, which comes after. With ``shared`` the headers and
    the outcome also go to a sidecar file, written in order by the one writer, so
    followers in other processes can read along (:class:`FollowedSpool`).
    """

    def __init__(self, path: str, shared: bool = False) -> None:
        super().__init__()
        self.path = path
        self.shared = shared
        self._file: _File | None = None
        #: Whether the file is to be saved: flushed to disk while written (set before
        #: the first byte).
        self.durable = False

    async def open(self) -> None:
        """Create the spool file (and its folder)."""
        self._file = _File(await _off_loop(_create, self.path))

    async def _publish(self, **outcome: object) -> None:
        if self.shared:
            with contextlib.suppress(OSError):
                await _off_loop(write_meta, self.path,
                                {"headers": self.headers, "size": self.size, **outcome})

    async def set_headers(self, headers: Mapping[str, str]) -> None:
        if self.headers is None:
            self.headers = dict(headers)
            await self._publish()
            self._notify()

    async def write(self, data: bytes) -> None:
        if not data:
            return
        await _off_loop(self._append, data)
        self.size += len(data)
        self._notify()

    async def written(self, offset: int, length: int) -> bytes:
        """``length`` bytes the spool already holds from ``offset`` (read off the loop;
        fewer only past its end)."""
        return bytes(await _off_loop(_read_at, self.path, offset, length))

    def _append(self, data: bytes) -> None:
        assert self._file is not None, "Spool.open() comes first"
        self._file.durable = self.durable
        self._file.write(data)

    async def keep(self, name: str) -> str:
        """Make every byte written durable and give the file the second name ``name``
        (a hard link: nothing is copied; a copy only where links are refused or the path
        holds another file by now, :func:`_link`), which stays when the spool is discarded;
        returns ``name``. Called once the download is complete: the spool is never
        written again, so the file saved and the bytes clients read are one. Raises
        OSError (a failed flush, ``ENOSPC``)."""
        assert self._file is not None, "Spool.open() comes first"
        await _off_loop(self._file.sync)
        await _off_loop(_link, self.path, self._file.file.fileno(), name)
        return name

    async def finish(self, error: BaseException | None = None) -> None:
        """Mark the download complete (or failed); readers drain or fail."""
        await self._close()
        if error is None:
            await self.set_headers({})
            self.done = True
            await self._publish(state="done", at=time.time())
        else:
            self.error = error
            upstream = error if isinstance(error, UpstreamError) else None
            state = "abandoned" if isinstance(error, Abandoned) else "failed"
            await self._publish(state=state, status=upstream.status if upstream else 502,
                                message=str(error) if upstream else refusal(error),
                                at=time.time(),
                                answer_headers=upstream.headers if upstream else {})
        self._notify()

    async def discard(self) -> None:
        """Remove the files (when the download is over and nobody reads it)."""
        await self._close()
        await _off_loop(remove, self.path)

    async def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                await _off_loop(self._file.close)


class FollowedSpool(_Progress):
    """A spool another process (the leader) writes, followed through the file system.

    One poller task per process reads the file's size and the leader's sidecar every
    :data:`POLL` seconds (off the loop) for all of this process's readers, and asks every
    :data:`LIVENESS_EVERY` polls whether the leader still holds its advisory lock. It
    stops once the outcome is known, or when :meth:`close` is called.
    """

    POLL = 0.02
    LIVENESS_EVERY = 50  # polls between liveness checks (about a second)

    def __init__(self, path: str, since: float,
                 leader_alive: Callable[[], Awaitable[bool]]) -> None:
        super().__init__()
        self.path = path
        self.since = since  # when the request resolved (wall clock, as the leader's "at")
        self.stale = False
        self.leader_gone = False
        self._leader_alive = leader_alive
        self._poller = asyncio.ensure_future(self._poll())

    def close(self) -> None:
        """No reader is left in this process: stop polling."""
        self._poller.cancel()

    async def wait_headers(self) -> Mapping[str, str]:
        while True:
            if self.stale:
                raise Stale(self.path)
            if self.headers is not None:
                return self.headers
            if self.leader_gone:
                raise LeaderGone(self.path)
            if self.error is not None:
                raise self.error
            await self.changed()

    async def _poll(self) -> None:
        polls = 0
        while not (self.done or self.error is not None or self.stale):
            meta = await _off_loop(read_meta, self.path)
            # The size after the sidecar: once it says "done", the size read is final.
            size = await _off_loop(_size, self.path)
            self._update(meta, size)
            polls += 1
            if polls % self.LIVENESS_EVERY == 0 and meta.get("state") is None \
                    and not await self._leader_alive():
                meta = await _off_loop(read_meta, self.path)
                if meta.get("state") is None:  # not finished in the meantime
                    self.leader_gone = True
                    self.error = SpoolFailed(
                        "the worker leading this download went away before finishing it "
                        "(it stopped, or lost its database session); the next request "
                        "downloads it again")
                    self._notify()
                    return
            await asyncio.sleep(self.POLL)

    def _update(self, meta: dict[str, Any], size: int) -> None:
        state = meta.get("state")
        if state == "abandoned":
            # Cancelled for want of readers: one that joined in that instant fetches
            # afresh (its headers, if sent already, are cut short by the error).
            self.stale = True
            self.error = Stale(self.path)
        elif state in ("done", "failed") and float(meta.get("at", 0)) < self.since:
            # Over before this request resolved (the files linger for the leader's other
            # readers): a failure is not replayed, and a saved download that the database
            # did not show has been reclaimed since. Fetch afresh.
            self.stale = True
            self.error = Stale(self.path)
        elif state == "failed":
            self.error = UpstreamError(int(meta.get("status", 404)), meta.get("message", ""),
                                       meta.get("answer_headers"))
        else:
            if self.headers is None and meta.get("headers") is not None:
                self.headers = dict(meta["headers"])
            self.size = max(self.size, size)
            self.done = state == "done"
        self._notify()


def _create(path: str) -> IO[bytes]:
    """A new file at ``path``. A file left there (by a worker that stopped) is unlinked,
    not truncated: its bytes may be a saved artifact's too (:meth:`Spool.keep`)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return open(path, "x+b")  # readable too: Spool.keep may have to copy through it


def _read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        return os.pread(handle.fileno(), length, offset)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def read(progress: _Progress, offset: int, length: int | None, step: int,
               hold: int = 0) -> AsyncIterator[bytes]:
    """``length`` bytes from ``offset`` (to the end when None) of a spool, as they arrive,
    in steps of at most ``step``; the last ``hold`` of them only once the download is
    complete (verified). Raises :class:`SpoolFailed` if it fails first, or if the file
    cannot be read, is gone or holds fewer bytes than were written to it."""
    try:
        handle = await _off_loop(open, progress.path, "rb")
    except FileNotFoundError:
        raise SpoolFailed(f"its spool file {progress.path} is gone; {_KEEP_AWAY}") from None
    except OSError as exc:
        raise SpoolFailed(f"its spool file {progress.path} cannot be opened ({exc}); check "
                          "WORKING_DIRECTORY's disk and permissions") from exc
    try:
        position, end = offset, None if length is None else offset + length
        while end is None or position < end:
            available = progress.size if end is None else min(progress.size, end)
            if end is not None and not progress.done:
                available = min(available, end - hold)
            if position < available:
                chunk = await _read_chunk(progress.path, handle, position,
                                          min(step, available - position))
                position += len(chunk)
                yield chunk
                continue
            if progress.error is not None:
                raise _failed(progress.error) from progress.error
            if progress.done:
                if end is not None and position < end:
                    raise SpoolFailed(
                        f"its download ended at {progress.size} bytes, before byte {end} "
                        "that the response promised (the upstream's file is shorter than "
                        "its remote artifact says); resync the repository")
                return
            await progress.changed()
    finally:
        handle.close()


async def _read_chunk(path: str, handle: IO[bytes], position: int, wanted: int) -> bytes:
    """Up to ``wanted`` bytes at ``position``, which the spool says it holds: none means
    the file was truncated or replaced under its readers (never waited for: they would
    spin)."""
    try:
        chunk = bytes(await _off_loop(os.pread, handle.fileno(), wanted, position))
    except OSError as exc:
        raise SpoolFailed(f"reading its spool file {path} failed ({exc}); check "
                          "WORKING_DIRECTORY's disk") from exc
    if not chunk:
        raise SpoolFailed(f"its spool file {path} holds fewer bytes than were written to "
                          f"it (none at {position}): something truncated it; {_KEEP_AWAY}")
    return chunk


def _failed(error: BaseException) -> SpoolFailed:
    """The error readers raise when the download failed (a follower's: its leader's)."""
    if isinstance(error, SpoolFailed):
        return SpoolFailed(str(error))
    if isinstance(error, (Abandoned, Stale)):
        return SpoolFailed("its download was cancelled for want of clients receiving it "
                           "(CONTENT_ASGI_ONDEMAND_UNATTENDED_BYTES); the client may retry")
    return SpoolFailed(f"its download failed ({error}); the log of the worker that led it "
                       "says why, and the next request downloads it again")
