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


def longest_existing(candidates: list[str], exists: list[int | bool]) -> str | None:
    """The first candidate (the longest base path) whose hash exists.

    ``exists`` holds one EXISTS answer per candidate, in order. pulpcore asks with one
    EXISTS that repeats candidate *i* *i + 1* times and reads the sum, which names the
    candidate only while at most one exists; installations upgraded from before pulpcore
    refused overlapping base paths can hold ``p7`` and ``p7/c`` together, and the sum then
    names the wrong one (or none). Per-candidate answers never do.
    """
    return next((key for key, found in zip(candidates, exists, strict=True) if found), None)
