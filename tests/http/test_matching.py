"""Which distribution serves a path, over arbitrary data (issue #17; no database): for any
set of base paths, matching picks the longest one that is the path or an ancestor of it,
and nothing on the way from raw request bytes to that choice raises anything but a 4xx."""

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pulp_content_asgi.protocol.paths import (
    BadPath,
    ContentPath,
    decode_path,
    locate,
)
from pulp_content_asgi.resolution.distributions import base_path_candidates, longest_match
from tests import adversarial

pytestmark = pytest.mark.adversarial

PREFIX = "/pulp/content/"
#: Segments from a small alphabet collide often (``a`` and ``a/a`` both exist); the others
#: bring Unicode, ``%``, spaces, dots and everything else.
_SEGMENT = st.one_of(st.sampled_from(["a", "b", "aa", "a.b", "%41", "A", "\u00e9", "e\u0301",
                                      " ", "..", ".", "~", "x y", "%", "#", "?", ";"]),
                     st.text(min_size=1, max_size=8).filter(lambda s: "/" not in s))
_BASE = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)
#: Rows an old installation can hold too: empty segments, a trailing slash, nothing.
_ODD_BASE = st.one_of(_BASE, st.text(max_size=12), _BASE.map(lambda b: b + "/"),
                      _BASE.map(lambda b: "/" + b), _BASE.map(lambda b: b.replace("/", "//")))


def _oracle(path: str, base_paths: set[str]) -> str | None:
    """The contract written independently: a base path serves ``path`` when its segments
    begin the path's non-empty segments; the one with the most segments wins."""
    segments = [s for s in path.split("/") if s]
    serving = [b for b in base_paths
               if b and b.split("/") == segments[:len(b.split("/"))]]
    return max(serving, key=lambda b: len(b.split("/")), default=None)


@settings(max_examples=adversarial.examples(300))
@given(base_paths=st.sets(_ODD_BASE, max_size=12),
       tail=st.lists(st.one_of(_SEGMENT, st.just("")), max_size=4),
       pick=st.integers(0, 20), slash=st.booleans())
@example(base_paths={"p7", "p7/c"}, tail=["x.iso"], pick=1, slash=False)
@example(base_paths={"a", "a/b", "a/b/c"}, tail=["", "", "f"], pick=2, slash=True)
def test_the_longest_ancestor_wins_and_matching_never_raises(base_paths, tail, pick, slash):
    """The path is one of the base paths (or anything) with more segments, empty ones
    (``//``) included: :func:`longest_match` agrees with the contract."""
    adversarial.TALLIES["matching"].counts["cases"] += 1
    ordered = sorted(base_paths)
    start = ordered[pick % len(ordered)] if ordered else ""
    path = "/".join([start, *tail]) + ("/" if slash else "")
    assert longest_match(path, base_paths) == _oracle(path, base_paths)


@settings(max_examples=adversarial.examples(300))
@given(raw=st.one_of(st.binary(max_size=300),
                     st.binary(max_size=200).map(lambda b: PREFIX.encode() + b),
                     st.text(max_size=100).map(lambda t: (PREFIX + t).encode())),
       base_paths=st.sets(_BASE, max_size=6))
@example(raw=b"/pulp/content/a/%2e%2e/b", base_paths={"a", "b"})
@example(raw=b"/pulp/content//a//b//", base_paths={"a/b"})
@example(raw=b"/pulp/content/" + b"a/" * 3000, base_paths={"a"})
def test_any_request_bytes_either_are_refused_with_a_4xx_or_match_cleanly(raw, base_paths):
    """From raw path bytes to the distribution: a 4xx (:class:`BadPath`), or candidates
    that are non-empty ancestors, longest first, ending at the path; the match, if any,
    one of them."""
    adversarial.TALLIES["matching"].counts["cases"] += 1
    try:
        path = decode_path(raw)
    except BadPath as bad:
        assert 400 <= bad.status < 500
        return
    target = locate(path, PREFIX, False)
    if not isinstance(target, ContentPath):
        return
    candidates = base_path_candidates(target.path)
    assert all(c and "" not in c.split("/") for c in candidates)
    assert [len(c) for c in candidates] == sorted((len(c) for c in candidates), reverse=True)
    for longer, shorter in itertools.pairwise(candidates):
        assert longer.startswith(shorter + "/")
    if candidates:
        assert candidates[0] == target.path.strip("/")
    chosen = longest_match(target.path, base_paths)
    assert chosen is None or chosen in candidates
    assert chosen == _oracle(target.path, base_paths)
