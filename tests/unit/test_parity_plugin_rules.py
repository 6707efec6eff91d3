"""Exact rules of the plugin parity corpus (conformance/parity_plugins.py): each accepts
the one difference it names and nothing near it."""

import json

from conformance import parity as base
from conformance.parity_plugins import PLUGIN_RULES, PluginProbe, npm_packument_extends

TARBALL = "http://h/somewhere/else/p/npm/streamed/hello/-/hello-1.0.0.tgz"
THEIRS = {"name": "hello", "versions": {"1.0.0": {"_id": "hello@1.0.0",
                                                  "dist": {"tarball": TARBALL}}},
          "dist-tags": {"latest": "1.0.0"}}


def packument(**dist: str) -> bytes:
    entry = {"_id": "hello@1.0.0", "name": "hello", "version": "1.0.0",
             "dist": {"tarball": TARBALL, **dist}}
    return json.dumps({**THEIRS, "versions": {"1.0.0": entry}}).encode()


def test_a_packument_without_integrity_is_accepted_only_when_no_sha512_is_known():
    theirs = json.dumps(THEIRS).encode()
    assert npm_packument_extends(packument(), theirs, integrity=False)
    assert not npm_packument_extends(packument(), theirs)  # known: integrity required
    assert npm_packument_extends(packument(integrity="sha512-AAAA"), theirs)
    # Not known, yet given: where would it come from?
    assert not npm_packument_extends(packument(integrity="sha512-AAAA"), theirs,
                                     integrity=False)
    # Anything else changed is still a difference.
    assert not npm_packument_extends(packument().replace(b"1.0.0.tgz", b"1.0.1.tgz"),
                                     theirs, integrity=False)


def verdict(field: str, ours: str, theirs: str, path: str, status: int,
            method: str = "GET", policy: str = "") -> str:
    probe = PluginProbe("x", path, method, policy=policy)
    return next((rule.why for rule in PLUGIN_RULES if rule.explains(
        base.Difference(field, ours, theirs), probe, status)), "UNEXPLAINED")


STREAMED_GEM = "/somewhere/else/parity-ab12cd/gem/streamed/gems/hello-streamed-1.0.0.gem"


def test_the_206_past_the_end_of_a_streamed_file_is_pulpcore_contents_bug_only_there():
    assert verdict("status", "416", "206", STREAMED_GEM, 416).startswith("old-app bug")
    # The same in a domain of a --domains run.
    assert verdict("status", "416", "206", STREAMED_GEM.replace(
        "else/", "else/domain-ab12cd/"), 416).startswith("old-app bug")
    # Not for stored (on-demand) content, nor the other way round.
    assert verdict("status", "416", "206", STREAMED_GEM.replace("streamed", "on-demand"),
                   416) == "UNEXPLAINED"
    assert verdict("status", "206", "416", STREAMED_GEM, 206) == "UNEXPLAINED"


BLOB = "/pulp/container/parity-ab12cd/container/streamed/blobs/sha256:" + "a" * 64
REGISTRY_ETAG = '"sha256:' + "a" * 64 + '"'


def test_a_streamed_blob_has_no_etag_where_pulpcore_content_forwards_the_registrys():
    assert verdict("etag", base.ABSENT, REGISTRY_ETAG, BLOB, 200,
                   policy="streamed").startswith("deliberate")
    assert verdict("etag", base.ABSENT, REGISTRY_ETAG, BLOB, 200, "HEAD",
                   policy="streamed").startswith("deliberate")
    # A stored blob must keep its ETag.
    assert verdict("etag", base.ABSENT, REGISTRY_ETAG, BLOB.replace("streamed", "immediate"),
                   200, policy="immediate") == "UNEXPLAINED"
