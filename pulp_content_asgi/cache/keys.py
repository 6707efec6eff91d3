"""Cache keys, as pulpcore computes them (``Handler.find_base_path_cached``, ``cache_key``,
``AsyncContentCache.make_key``). Pure functions."""

from __future__ import annotations

import os

GUARD_FIELD = "DISTRO#GUARD#PRESENT"


def base_key(base_path: str, domain_name: str | None) -> str:
    """The hash of a distribution: ``<domain>:<base_path>`` when domains are enabled."""
    return f"{domain_name}:{base_path}" if domain_name is not None else base_path


def field(path: str, method: str) -> str:
    """The field of one response in the hash: the request path and method."""
    return f"{path}:{method}"


def ancestors(path: str) -> list[str]:
    """pulpcore's ``Handler._base_paths``: each parent of ``path``, longest first.

    ``a/b/c.iso`` gives ``["a/b", "a"]`` (the path itself is not a candidate here).
    """
    found: list[str] = []
    while True:
        path = os.path.split(path)[0]
        if not path.lstrip("/"):
            return found
        found.append(path)


def exists_probe(keys: list[str]) -> list[str]:
    """One EXISTS for all candidates: candidate *i* repeated *i + 1* times, so the count
    of existing keys says which one exists (base paths never overlap)."""
    return [key for i, key in enumerate(keys) for _ in range(i + 1)]


def from_count(count: int, keys: list[str]) -> str | None:
    return keys[count - 1] if 0 < count <= len(keys) else None
