"""The benchmark data set, built once per bench database through pulpcore's ORM.

* ``bench-small``: 10,000 published 4 KiB files;
* ``bench-medium``: 200 published 1 MiB files;
* ``bench-large``: one 1 GiB file;
and the nginx document root laid out by relative path (hard links to the same
artifact files), so nginx serves byte-identical content: the ceiling.

The object-storage set (:func:`objects`): 1,000 published 4 KiB files in the domain
``bench-s3``, whose storage is ``storages.backends.s3.S3Storage`` in a bucket of the run's
S3 server, with ``redirect_to_object_storage`` on. Its rows are made once; the objects
are uploaded again by every run (moto keeps them in memory only).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

#: The object-storage scenario's domain, bucket, distribution and set size.
S3_DOMAIN = "bench-s3"
S3_BUCKET = "pulp-bench"
S3_BASE_PATH = "bench-objects"
S3_COUNT = 1000
#: moto accepts any credentials; the check recomputes signatures with these.
S3_CREDENTIALS = {"access_key": "bench", "secret_key": "bench-secret"}
S3_REGION = "us-east-1"


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


#: The sets each needs: published-file points and bursts (``bench-small``), slow readers
#: (``bench-medium``, probing ``bench-small``), the 1 GiB file (also what held connections
#: read), on-demand (medium files
#: and the 1 GiB one, probing ``bench-small``).
SETS = {"published": ("bench-small",), "burst": ("bench-small",),
        "slow": ("bench-small", "bench-medium"), "large": ("bench-small", "bench-large"),
        "held": ("bench-small", "bench-large"),
        "ondemand": ("bench-small", "bench-medium", "bench-large")}
SIZES = {"bench-small": (10000, 4 * KIB), "bench-medium": (200, MIB), "bench-large": (1, GIB)}


def build(root: str, scenarios: frozenset[str] | None = None) -> Dataset:
    """Create what ``scenarios`` need (all when None; the first run takes a minute) and
    lay out nginx's root; the paths of a set not built are empty."""
    wanted = {base for name, bases in SETS.items()
              if scenarios is None or name in scenarios for base in bases}
    nginx_root = os.path.join(root, "nginx-root")
    for base in SIZES:
        if base in wanted:
            _ensure(base, *SIZES[base])
            _link_tree(nginx_root, base)
    paths = {base: _paths(base) if base in wanted else [] for base in SIZES}
    return Dataset(paths["bench-small"], paths["bench-medium"],
                   (paths["bench-large"] or [""])[0], nginx_root)


@dataclass(frozen=True)
class ObjectSet:
    """The object-storage scenario's files: URL paths under the content prefix (with the
    domain segment) and each one's bytes, bucket and object key."""

    domain: str
    bucket: str
    paths: list[str]
    blobs: dict[str, bytes]  # URL path under the prefix -> bytes
    keys: dict[str, str]  # URL path under the prefix -> object key in the bucket


def _object_files() -> Iterator[tuple[str, bytes]]:
    for i in range(S3_COUNT):
        yield f"pkgs/{i % 100:02d}/object-{i:05d}.bin", _blob(f"{S3_BASE_PATH}-{i}", 4 * KIB)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION,
                        aws_access_key_id=S3_CREDENTIALS["access_key"],
                        aws_secret_access_key=S3_CREDENTIALS["secret_key"])


def _s3_domain(endpoint: str) -> Any:
    """The domain, pointed at this run's S3 server (its port changes between runs)."""
    from pulpcore.app.models import Domain

    domain, _ = Domain.objects.update_or_create(name=S3_DOMAIN, defaults={
        "storage_class": "storages.backends.s3.S3Storage",
        "storage_settings": {**S3_CREDENTIALS, "bucket_name": S3_BUCKET,
                             "endpoint_url": endpoint, "region_name": S3_REGION,
                             "signature_version": "s3v4", "addressing_style": "path"},
        "redirect_to_object_storage": True})
    return domain


def objects(endpoint: str) -> ObjectSet:
    """The object-storage set on the S3 server at ``endpoint``: the bucket, every object
    uploaded (8 at a time), and the published rows (made on the first run)."""
    from pulp_file.app.models import FileDistribution
    from pulpcore.app.models import Domain
    from pulpcore.app.util import set_domain

    from pulp_content_asgi.devtools import data

    client = s3_client(endpoint)
    client.create_bucket(Bucket=S3_BUCKET)
    files = dict(_object_files())
    domain = _s3_domain(endpoint)
    set_domain(domain)  # artifact names and rows are the domain's
    try:
        keys = {path: data.artifact_name(hashlib.sha256(blob).hexdigest())
                for path, blob in files.items()}

        def put(path: str) -> None:
            client.put_object(Bucket=S3_BUCKET, Key=keys[path], Body=files[path])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, files))
        existing = FileDistribution.objects.filter(base_path=S3_BASE_PATH,
                                                   pulp_domain=domain).first()
        if not (existing and existing.publication and
                existing.publication.published_artifact.count() == S3_COUNT):
            if existing:
                existing.delete()
            print(f"  building {S3_DOMAIN}/{S3_BASE_PATH}: {S3_COUNT} x 4096 bytes",
                  flush=True)
            # The bytes are in the bucket already (uploaded above under the same keys).
            repository = data.bulk_repository(f"{S3_BASE_PATH}-repo-{os.getpid()}",
                                              files.items(), store=lambda _n, _b: None)
            data.distribute(S3_BASE_PATH, publication=data.publish(
                repository.latest_version()))
    finally:
        set_domain(Domain.objects.get(name="default"))
    prefix = f"{S3_DOMAIN}/{S3_BASE_PATH}/"
    return ObjectSet(S3_DOMAIN, S3_BUCKET, [prefix + p for p in sorted(files)],
                     {prefix + p: b for p, b in files.items()},
                     {prefix + p: k for p, k in keys.items()})
