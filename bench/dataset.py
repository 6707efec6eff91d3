"""The benchmark data set, built once per bench database through pulpcore's ORM.

* ``bench-small``: 10,000 published 4 KiB files;
* ``bench-medium``: 200 published 1 MiB files;
* ``bench-large``: one 1 GiB file;
and the nginx document root laid out by relative path (hard links to the same
artifact files), so nginx serves byte-identical content: the ceiling.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Dataset:
    small_paths: list[str]  # URL paths under the content prefix
    medium_paths: list[str]
    large_path: str
    nginx_root: str


def _blob(seed: str, size: int) -> bytes:
    block = hashlib.sha512(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _ensure(base_path: str, count: int, size: int) -> None:
    from pulp_file.app.models import FileDistribution

    from pulp_content_asgi.devtools import data

    existing = FileDistribution.objects.filter(base_path=base_path).first()
    if existing and existing.publication and \
            existing.publication.published_artifact.count() == count:
        return
    if existing:
        existing.delete()
    print(f"  building {base_path}: {count} x {size} bytes", flush=True)
    files = ((f"pkgs/{i % 100:02d}/file-{i:05d}.bin", _blob(f"{base_path}-{i}", size))
             for i in range(count))
    repository = data.bulk_repository(f"{base_path}-repo-{os.getpid()}", files)
    data.distribute(base_path, publication=data.publish(repository.latest_version()))


def _link_tree(root: str, base_path: str) -> None:
    from pulp_file.app.models import FileDistribution

    distribution = FileDistribution.objects.get(base_path=base_path)
    published = distribution.publication.published_artifact.select_related(
        "content_artifact__artifact")
    for item in published.iterator():
        target = os.path.join(root, base_path, item.relative_path)
        if os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.link(item.content_artifact.artifact.file.path, target)


def _paths(base_path: str) -> list[str]:
    from pulp_file.app.models import FileDistribution

    distribution = FileDistribution.objects.get(base_path=base_path)
    return sorted(f"{base_path}/{p}" for p in distribution.publication.published_artifact
                  .values_list("relative_path", flat=True))


def build(root: str) -> Dataset:
    """Create what is missing (the first run takes a minute) and lay out nginx's root."""
    _ensure("bench-small", 10000, 4 * KIB)
    _ensure("bench-medium", 200, MIB)
    _ensure("bench-large", 1, GIB)
    nginx_root = os.path.join(root, "nginx-root")
    for base in ("bench-small", "bench-medium", "bench-large"):
        _link_tree(nginx_root, base)
    return Dataset(_paths("bench-small"), _paths("bench-medium"), _paths("bench-large")[0],
                   nginx_root)
