"""Create (or re-create) the demo repository served by ``make demo``.

A pulp_file repository with nested folders, a 0-byte file and an ``index.html`` in a
sub-folder, published and distributed at base path ``demo``.
"""

from __future__ import annotations

import sys

DEMO_FILES = {
    "README.txt": b"Served by pulp-content-asgi, Pulp's content app on Django ASGI.\n",
    "empty.dat": b"",
    "data/sample.json": b'{"hello": "pulp"}\n',
    "docs/index.html": b"<html><body><h1>Demo docs</h1><p>index.html of docs/</p></body></html>\n",
    "docs/guide/intro.txt": b"Nested folders are listed like pulpcore-content lists them.\n",
    "packages/a/b/c/deep.txt": b"deep\n" * 1000,
    "isos/big.iso": bytes(range(256)) * 4096,
}


def create(base_path: str = "demo") -> str:
    """Build the demo; returns the base path it is distributed at."""
    from pulp_file.app.models import FileDistribution, FileRepository

    from pulp_content_asgi.devtools import data

    FileDistribution.objects.filter(base_path=base_path).delete()
    FileRepository.objects.filter(name=f"{base_path}-repository").delete()
    repository = data.repository(f"{base_path}-repository", DEMO_FILES)
    publication = data.publish(repository.latest_version())
    data.distribute(base_path, publication=publication)
    return base_path


if __name__ == "__main__":
    from pulp_content_asgi import bootstrap

    bootstrap.setup()
    base = create(*(sys.argv[1:2]))
    print(f"Demo repository distributed at base path '{base}'.")
