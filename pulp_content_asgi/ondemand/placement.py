"""Putting a verified download into artifact storage whole or not at all.

pulpcore saves an artifact by moving the downloaded file into storage inside
``Artifact.save()`` (``ArtifactFileField.pre_save`` → ``FileSystem._save``). Three things go
wrong there, found by reading pulpcore 3.123 and Django 5.2 and reproduced by
``tests/test_ondemand_saves_e2e.py``:

* Across file systems (``WORKING_DIRECTORY`` and ``MEDIA_ROOT`` on different mounts)
  Django's ``file_move_safe`` copies into the artifact's final path; a full ``MEDIA_ROOT``
  leaves a **truncated file there**, and since ``FileSystem._save`` ignores
  ``FileExistsError`` (content-addressed storage), the next save of that artifact links its
  row to the truncated file.
* The file is moved before the row is written: a database lost in between leaves a **file
  without its row**, and the save cannot be retried (the downloaded file is gone).
* Nothing says who put a file there, so nothing can safely remove it.

Here the file goes in first, atomically (a hard link, or a copy beside the final name
renamed into place), an existing file of the wrong size is replaced, and the
:class:`Placement` remembers whether it created the file. The save that follows takes a
transaction-level advisory lock on the artifact (:meth:`Placement.lock`) before placing;
a save that will never commit gives the file back under the same lock unless a row has
it by then (:meth:`Placement.settle_back`), so two savers never remove each other's file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import TypeGuard

log = logging.getLogger(__name__)

#: errno values that mean "this file system has no room" (quota included).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Copy buffer (bytes).
CHUNK = 1024 * 1024


def no_space(exc: BaseException) -> TypeGuard[OSError]:
    """Whether ``exc`` is a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def _drop(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _copy_into_place(source: str, target: str, mode: int | None) -> None:
    """Copy ``source`` beside ``target``, flush it to disk, rename it over ``target``.

    A reader (or a crash) sees the old ``target`` or the whole new one, never a part. Raises
    OSError (``ENOSPC`` when the target's file system is full); the partial copy is gone.
    """
    partial = os.path.join(os.path.dirname(target),
                           f".partial-{uuid.uuid4().hex}-{os.path.basename(target)}")
    try:
        with open(source, "rb") as src, open(partial, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(partial, mode)
        os.replace(partial, target)
    except BaseException:
        _drop(partial)
        raise


def place_file(source: str, target: str, size: int, mode: int | None = None) -> bool:
    """Put the verified file ``source`` (``size`` bytes) at ``target``; True when this call
    created ``target``, False when an identical file was there already.

    ``source`` is removed once ``target`` holds its bytes, and kept when this raises (the
    save can be retried). An existing ``target`` of ``size`` bytes is the artifact already
    (storage is content-addressed, and every writer renames whole files into place); one of
    any other size is the leftover of an interrupted copy and is replaced. Raises OSError
    (``ENOSPC``: the target's file system is full), leaving no partial file behind.
    """
    os.makedirs(os.path.dirname(target), exist_ok=True)
    existing = _size(target)
    if existing == size:
        _drop(source)
        return False
    if existing is None:
        try:
            os.link(source, target)  # same file system: atomic, nothing copied
        except FileExistsError:
            return place_file(source, target, size, mode)  # another saver was faster
        except OSError:
            _copy_into_place(source, target, mode)  # EXDEV (another mount), EPERM...
        else:
            if mode is not None:
                os.chmod(target, mode)
    else:
        log.warning("Replacing %s: %d bytes where the artifact has %d (left by an "
                    "interrupted copy).", target, existing, size)
        _copy_into_place(source, target, mode)
    _drop(source)
    return True


def lock_id(domain_id: object, sha256: str) -> int:
    """The advisory lock of one artifact in one domain (signed 64 bits). Storage is shared
    by every host, so unlike download leadership it has no per-host part."""
    digest = hashlib.sha256(f"artifact:{domain_id}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Placement:
    """One verified download on its way into the current domain's storage.

    ``source`` is the downloaded file (in ``WORKING_DIRECTORY``); ``name`` its name in
    storage once placed; ``created`` whether this save put the file there (it stays True
    across retries: a retry finds its own earlier file in place). Methods run on an ORM
    thread with the artifact's domain set.
    """

    source: str
    sha256: str
    size: int
    name: str = ""
    created: bool = False

    def lock(self) -> None:
        """Take the artifact's transaction-level advisory lock (released at commit or
        rollback, or when the session dies): savers and :meth:`settle_back` take turns."""
        from django.db import connection
        from pulpcore.app.util import get_domain

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)",
                           [lock_id(get_domain().pk, self.sha256)])

    def place(self) -> str:
        """Put the file into storage (idempotent); its storage name.

        Raises OSError when storage refuses it (``ENOSPC``: ``MEDIA_ROOT`` is full).
        """
        from django.core.files import File
        from django.core.files.storage import FileSystemStorage
        from pulpcore.app.models.storage import get_artifact_path
        from pulpcore.app.util import get_domain

        storage = get_domain().get_storage()
        name = get_artifact_path(self.sha256)
        if isinstance(storage, FileSystemStorage):
            created = place_file(self.source, storage.path(name), self.size,
                                 storage.file_permissions_mode)
        elif storage.exists(name) and storage.size(name) == self.size:
            _drop(self.source)
            created = False
        else:  # object storage: an upload is stored whole or not at all
            with open(self.source, "rb") as source:
                stored = storage.save(name, File(source, name=name))
            if stored != name:
                storage.delete(stored)
                raise RuntimeError(f"Storage saved the artifact as {stored!r}, not {name!r}: "
                                   "configure it to overwrite files (pulpcore needs that too).")
            _drop(self.source)
            created = True
        self.created = self.created or created
        self.name = name
        return name

    def settle_back(self) -> bool:
        """A save that will not commit: remove the file it created unless an artifact row
        has it by now (another saver's). True when removed. Raises the database's errors."""
        from django.db import transaction
        from pulpcore.app.models import Artifact
        from pulpcore.app.util import get_domain

        _drop(self.source)
        if not (self.created and self.name):
            return False
        with transaction.atomic():
            self.lock()
            domain = get_domain()
            if Artifact.objects.filter(sha256=self.sha256, pulp_domain=domain).exists():
                return False
            domain.get_storage().delete(self.name)
        self.created = False
        return True
