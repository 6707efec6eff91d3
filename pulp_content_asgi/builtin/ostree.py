"""pulp_ostree's port: repository versions, which is all pulp_ostree serves here, with
on-demand objects held to their names.

``OstreeDistribution`` has no publications and overrides no model hook: refs, objects,
``config`` and ``summary`` are content artifacts of the repository version.
:class:`~pulp_content_asgi.plugin.RepositoryVersionHandler` serves them;
tests/ports/test_generic_e2e.py checks that the installed plugin still overrides none of the
hooks this skips.

What it adds: pulp_ostree's sync records no digest for on-demand objects
(``DeclarativeArtifact(artifact=Artifact(), …)``, ``app/tasks/synchronizing.py``), so
pulpcore-content saves whatever the upstream sends. An OSTree object's name *is* its
checksum (SHA-256, ``objects/<2 hex>/<62 hex>.<type>``): of the object's bytes for the
metadata objects (``.commit``, ``.dirtree``, ``.dirmeta``: serialized GVariants, stored
as they are in an archive repository), and for a file object (``.filez``) of ostree's
content header (mode, uid, gid, xattrs, symlink target) followed by the uncompressed
content, which libostree computes (``OSTree.content_stream_parse``,
``OSTree.checksum_file_from_input``). :class:`ObjectNameCheck` declares that with no
request at all. ``.commitmeta`` (detached metadata: signatures, changed in place) and
``.sig`` are not content-addressed and are saved as before.
"""

from __future__ import annotations

import os
import re

from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import RepositoryVersionHandler
from pulp_content_asgi.plugin.upstream import Declared, UpstreamCheck

#: ``objects/ab/<62 hex>.<type>`` → the checksum and the type.
OBJECT = re.compile(r"(?:^|/)objects/([0-9a-f]{2})/([0-9a-f]{62})\.([a-z]+)$")
#: Metadata objects: the checksum is the SHA-256 of the object's bytes.
METADATA = frozenset({"commit", "dirtree", "dirmeta"})


def file_object_checksum(path: str) -> str:
    """The checksum of the archive-mode file object (``.filez``) at ``path``, as libostree
    computes it. Raises ``GLib.Error`` for bytes that are not a file object."""
    import gi

    gi.require_version("OSTree", "1.0")
    from gi.repository import Gio, OSTree

    stream = Gio.File.new_for_path(path).read(None)
    try:
        _, content, info, xattrs = OSTree.content_stream_parse(
            True, stream, os.path.getsize(path), False, None)
        _, checksum = OSTree.checksum_file_from_input(info, xattrs, content,
                                                      OSTree.ObjectType.FILE, None)
    finally:
        stream.close(None)
    return str(OSTree.checksum_from_bytes(bytes(checksum)))


class FileObject:
    """Checks a downloaded ``.filez`` against ``expected`` (:data:`~.upstream.Verify`)."""

    def __init__(self, expected: str) -> None:
        self.expected = expected

    def __call__(self, path: str) -> str | None:
        from gi.repository import GLib

        try:
            actual = file_object_checksum(path)
        except GLib.Error as exc:
            return f"not an OSTree file object ({exc.message})"
        return None if actual == self.expected else f"OSTree object checksum {actual}"


class ObjectNameCheck(UpstreamCheck):
    """An OSTree object against the checksum its relative path names."""

    def declared(self, url: str, relative_path: str, document: bytes | None) -> Declared:
        found = OBJECT.search(relative_path)
        if found is None:
            return Declared()
        checksum, kind = found.group(1) + found.group(2), found.group(3)
        if kind in METADATA:
            return Declared({"sha256": checksum})
        if kind == "filez":
            return Declared(verify=FileObject(checksum))
        return Declared()


OBJECT_NAME = ObjectNameCheck()


class OstreeHandler(RepositoryVersionHandler):
    """``OstreeDistribution``: repository versions; fetched objects held to their names."""

    def upstream_check(self, distribution: Distribution, path: str) -> UpstreamCheck | None:
        return OBJECT_NAME


HANDLERS = {"ostree.OstreeDistribution": OstreeHandler}
