"""Cache keys and entries in pulpcore's format, without Redis or a database."""

from __future__ import annotations

import json

import pytest

from pulp_content_asgi.cache import entries, keys


def test_base_keys_and_fields_match_pulpcore():
    assert keys.base_key("foo/bar", None) == "foo/bar"
    assert keys.base_key("foo/bar", "default") == "default:foo/bar"
    assert keys.field("/pulp/content/foo/bar/a.txt", "GET") == "/pulp/content/foo/bar/a.txt:GET"


@pytest.mark.parametrize(("path", "ancestors"), [
    ("a/b/c.iso", ["a/b", "a"]),
    ("a/b/", ["a/b", "a"]),
    ("a", []),
    ("a/", ["a"]),
])
def test_candidate_base_paths_are_pulpcores(path, ancestors):
    assert keys.ancestors(path) == ancestors


@pytest.mark.parametrize(("exists", "found"), [
    ([1, 0, 0], "a/b/c"), ([0, 1, 0], "a/b"), ([0, 0, 1], "a"), ([0, 0, 0], None),
    # Overlapping base paths (an installation upgraded from before pulpcore refused them):
    # the longest one wins, as in the database lookup.
    ([0, 1, 1], "a/b"), ([1, 1, 1], "a/b/c"), ([1, 0, 1], "a/b/c"),
])
def test_the_longest_existing_distribution_hash_is_the_key(exists, found):
    assert keys.longest_existing(["a/b/c", "a/b", "a"], exists) == found


def test_file_entries_round_trip_in_pulpcores_shape():
    entry = entries.Entry("FileResponse", {"ETag": '"abc"', "Content-Type": "text/plain"},
                          path="/var/lib/pulp/media/artifact/ab/c")
    raw = entries.encode(entry, 600, now=1000.0)
    stored = json.loads(raw)
    assert stored == {"headers": {"ETag": '"abc"', "Content-Type": "text/plain"},
                      "type": "FileResponse", "expires": 1600.0, "status": 200,
                      "path": "/var/lib/pulp/media/artifact/ab/c"}
    assert entries.decode(raw, now=1500.0) == entry
    assert entries.decode(raw, now=1601.0) is None  # expired entries are misses


def test_entries_pulpcore_wrote_are_read():
    text = json.dumps({"headers": {"Content-Type": "text/html"}, "status": 200,
                       "expires": None, "text": "<html/>", "type": "Response"})
    assert entries.decode(text).body == b"<html/>"
    binary = json.dumps({"headers": {}, "status": 200, "expires": None,
                         "body": b"\x00\x01".hex(), "type": "Response"})
    assert entries.decode(binary).body == b"\x00\x01"
    redirect = json.dumps({"headers": {}, "expires": None, "location": "https://s3/x",
                           "type": "Redirect"})
    assert entries.decode(redirect).location == "https://s3/x"
    missing = json.dumps({"headers": {}, "expires": None, "reason": "Not Found",
                          "type": "HTTPNotFound"})
    assert entries.decode(missing).status == 404


@pytest.mark.parametrize("raw", ["not json", "{}", '{"type": "Mystery", "expires": null}',
                                 '{"type": "FileResponse", "headers": {}}'])
def test_unusable_entries_are_misses(raw):
    assert entries.decode(raw) is None


def test_per_response_headers_are_not_stored():
    from pulp_content_asgi.plugin import results

    result = results.ServeBody(b"x", 200, {"Content-Type": "text/plain", "Content-Length": "1",
                                           "X-PULP-CACHE": "MISS"})
    entry = entries.from_result(result, None, {})
    assert entry.headers == {"Content-Type": "text/plain"}
