"""The verdicts of ``make parity`` (conformance/parity.py): every rule explains the
difference it was written for and not its near miss, our validators and statuses are
checked against the database's expectation whatever pulpcore-content answers, and a
difference no rule explains stays ``UNEXPLAINED`` (issue #12: a check must be able to
fail)."""

from __future__ import annotations

import pytest

from conformance import parity
from conformance.parity import ABSENT, Answer, Difference, Probe

PREFIX = "/somewhere/else/"
FILE = f"{PREFIX}parity-ab12cd/pub/a.txt"
SHA = "4" * 64
ETAG = f'"{SHA}"'
JOINED = "Sun, 29 Nov 2026 11:44:28 GMT"
MTIME = "Sun, 29 Nov 2026 11:44:29 GMT"
EXPECT = {"etag": ETAG, "last-modified": JOINED}
STAMP = "20261129T114428Z"
CHECKPOINT = f"{PREFIX}parity-ab12cd/ckpt/{STAMP}/"
ARTIFACT = (f"{PREFIX}0192f2e4-0000-7000-8000-000000000000/artifact/0193a1b2?"
            "expires=1764500000&validate_token=abc:def")
LISTING_OURS = (b"<html><head><title>Index of /p/ckpt/</title></head><body>"
                b"<h1>Index of /p/ckpt/</h1><a href=\"./20261129T114428Z/\">x</a></body></html>")
LISTING_THEIRS = (b"<html><head><title>Index of </title></head><body>"
                  b"<h1>Index of </h1><a href=\"./20261129T114428Z/\">x</a></body></html>")


def verdict(field: str, ours: str, theirs: str, probe: Probe, status: int) -> str:
    """The verdict of one difference alone (no other field differs)."""
    bodies = (ours.encode(), theirs.encode()) if field == "body" else (b"", b"")
    answers = [Answer(status, {}, body) for body in bodies]
    return parity.verdicts(probe, *answers, [Difference(field, ours, theirs)])[0]


def at(path: str, method: str = "GET", **fields: object) -> Probe:
    return Probe("test", path, method, **fields)  # type: ignore[arg-type]


LATER_ONLY = at(CHECKPOINT + "k2.txt", expect={"status": "404"},
                facts=frozenset({parity.LATER_ONLY}))
IN_SNAPSHOT = at(CHECKPOINT + "k.txt", expect={"status": "200", **EXPECT})

#: (rule, field, ours, theirs, probe, status of ours): each rule's own case.
EXPLAINED = [
    (parity.ETAG, "etag", ETAG, '"18ec816fcd7351a0-258"', at(FILE, expect=EXPECT), 200),
    (parity.LAST_MODIFIED, "last-modified", JOINED, MTIME, at(FILE, expect=EXPECT), 206),
    (parity.LAST_MODIFIED_304, "last-modified", JOINED, ABSENT, at(FILE, expect=EXPECT),
     304),
    ("Content-Type (RFC 9110", "content-type", ABSENT, "text/plain", at(FILE), 304),
    ("X-PULP-ARTIFACT-SIZE (RFC 9110", "x-pulp-artifact-size", ABSENT, "600", at(FILE),
     304),
    ("our 416 is a text error", "content-type", "text/plain; charset=utf-8",
     "application/octet-stream", at(FILE), 416),
    ("our 416 says why", "body", "416: Range Not Satisfiable", "", at(FILE), 416),
    ("other spacing", "allow", "GET, HEAD", "GET,HEAD", at(FILE, "POST"), 405),
    ("HEAD of the prefix", "content-length", ABSENT, "7", at(PREFIX, "HEAD"), 200),
    ("bare prefix", "status", "301", "404", at(PREFIX.rstrip("/")), 301),
    ("'.'/'..' segments", "status", "400", "404", at(f"{PREFIX}p/odd/dir/../a.txt"), 400),
    ("text fields cannot contain NUL", "status", "400", "500", at(f"{FILE}%00"), 400),
    ("refuse a raw NUL", "body", "", "Invalid char in url path:\n  b'GET /x\\x00'",
     at(f"{FILE}\x00"), 400),
    ("repeated slashes", "status", "200", "404", at(f"{PREFIX}parity-ab12cd//odd/a.txt"),
     200),
    ("exact snapshot", "status", "404", "200", LATER_ONLY, 404),
    ("artifact distribution's answers", "etag", ETAG, ABSENT,
     at(ARTIFACT, expect=EXPECT), 200),
    ("as the ETag above", "last-modified", JOINED, ABSENT, at(ARTIFACT, expect=EXPECT), 200),
    ("sends no X-PULP-ARTIFACT-SIZE", "x-pulp-artifact-size", "22", ABSENT, at(ARTIFACT),
     200),
    ("every answer of a guarded distribution says private", "cache-control", "private",
     ABSENT, at(FILE, facts=frozenset({parity.GUARDED})), 403),
]

#: (field, ours, theirs, probe, status of ours): one step off a rule's case each.
NEAR_MISSES = {
    "another sha256 than the artifact's": ("etag", '"' + "5" * 64 + '"',
                                           '"18ec816fcd7351a0-258"', at(FILE, expect=EXPECT),
                                           200),
    "an ETag with nothing to check it against": ("etag", ETAG, '"18ec816fcd7351a0-258"',
                                                 at(FILE), 200),
    "a Last-Modified a second off the join time": ("last-modified", MTIME, MTIME,
                                                   at(FILE, expect=EXPECT), 200),
    "the version's time, not the content's": ("last-modified", "Sun, 29 Nov 2026 11:44:30 GMT",
                                              MTIME, at(FILE, expect=EXPECT), 200),
    "a Last-Modified on a 404": ("last-modified", JOINED, MTIME, at(FILE, expect=EXPECT), 404),
    "a 200 without pulpcore-content's Last-Modified": ("last-modified", JOINED, ABSENT,
                                                       at(FILE, expect=EXPECT), 200),
    "a 200 without Content-Type": ("content-type", ABSENT, "text/plain", at(FILE), 200),
    "a 200 without X-PULP-ARTIFACT-SIZE": ("x-pulp-artifact-size", ABSENT, "600", at(FILE),
                                           200),
    "a 416 typed as HTML": ("content-type", "text/html", "application/octet-stream",
                            at(FILE), 416),
    "a 416 with another text": ("body", "416: Bad range", "", at(FILE), 416),
    "an Allow that lost HEAD": ("allow", "GET", "GET,HEAD", at(FILE, "POST"), 405),
    "GET of the prefix without a length": ("content-length", ABSENT, "7", at(PREFIX), 200),
    "HEAD of a file without a length": ("content-length", ABSENT, "600", at(FILE, "HEAD"),
                                        200),
    "a redirect of a path below the prefix": ("status", "301", "404", at(f"{PREFIX}x"), 301),
    "a 400 for a name starting with dots": ("status", "400", "404", at(f"{PREFIX}p/odd/..a"),
                                            400),
    "a 400 without a NUL": ("status", "400", "500", at(FILE), 400),
    "an empty 400 without a NUL": ("body", "", "Invalid char in url path", at(FILE), 400),
    "a 200 where no slash is doubled": ("status", "200", "404", at(FILE), 200),
    # The bar of #12 item 1: the file that is in the snapshot never gets this rule,
    # whatever its path looks like.
    "our 404 for a file in the checkpoint": ("status", "404", "200", IN_SNAPSHOT, 404),
    "our 404 under a timestamp, no fact": ("status", "404", "200", at(CHECKPOINT + "k2.txt"),
                                           404),
    "another sha256 on the artifact URL": ("etag", '"' + "5" * 64 + '"', ABSENT,
                                           at(ARTIFACT, expect=EXPECT), 200),
    "another date on the artifact URL": ("last-modified", MTIME, ABSENT,
                                         at(ARTIFACT, expect=EXPECT), 200),
    "no X-PULP-ARTIFACT-SIZE's exception off the artifact URL": (
        "x-pulp-artifact-size", "600", ABSENT, at(FILE), 200),
    "private on a distribution without a guard": ("cache-control", "private", ABSENT,
                                                  at(FILE), 403),
    "a guarded Cache-Control that is not theirs plus private": (
        "cache-control", "private, max-age=60", ABSENT,
        at(FILE, facts=frozenset({parity.GUARDED})), 200),
    "a guarded Cache-Control that lost theirs": (
        "cache-control", "private", "no-cache", at(FILE, facts=frozenset({parity.GUARDED})),
        200),
}


@pytest.mark.parametrize(("theirs", "ours"), [
    ("public, max-age=0, must-revalidate", "max-age=0, must-revalidate, private"),
    ("no-cache", "no-cache, private")])
def test_a_guarded_file_s_cache_control_is_theirs_with_private(theirs: str, ours: str) -> None:
    """pulp_rpm's and pulpcore's values on a guarded distribution, as parity sees them."""
    probe = at(FILE, facts=frozenset({parity.GUARDED}))
    assert "says private" in verdict("cache-control", ours, theirs, probe, 200)


@pytest.mark.parametrize(("why", "field", "ours", "theirs", "probe", "status"), EXPLAINED,
                         ids=[case[0][:40] for case in EXPLAINED])
def test_each_rule_explains_its_difference(why: str, field: str, ours: str, theirs: str,
                                           probe: Probe, status: int) -> None:
    assert why in verdict(field, ours, theirs, probe, status)


def test_every_rule_has_its_case() -> None:
    """A rule added without a case here is caught (its near miss belongs below too)."""
    covered = {next(rule.why for rule in parity.RULES
                    if rule.explains(Difference(f, o, t), p, s))
               for _, f, o, t, p, s in EXPLAINED}
    assert covered == {rule.why for rule in parity.RULES}


@pytest.mark.parametrize(("field", "ours", "theirs", "probe", "status"),
                         NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_a_near_miss_is_unexplained(field: str, ours: str, theirs: str, probe: Probe,
                                    status: int) -> None:
    assert verdict(field, ours, theirs, probe, status) == "UNEXPLAINED"


def _judge(probe: Probe, ours: Answer, theirs: Answer) -> dict[str, str]:
    diffs, found = parity.judge(probe, ours, theirs)
    return {d.field: v for d, v in zip(diffs, found, strict=True)}


def _file_answer(status: int, body: bytes, **headers: str) -> Answer:
    return Answer(status, {"content-length": str(len(body)), **headers}, body)


def test_a_whole_answer_follows_from_the_checkpoint_status_only_with_its_fact() -> None:
    ours = _file_answer(404, b"404: Not Found", **{"content-type": "text/plain; charset=utf-8"})
    theirs = _file_answer(200, b"second", **{"content-type": "text/plain",
                                             "etag": '"18ec817021cfcca2-6"'})
    later = _judge(LATER_ONLY, ours, theirs)
    assert "exact snapshot" in later.pop("status")
    assert set(later.values()) == {"follows from the status difference"}
    same_shape = _judge(at(CHECKPOINT + "k2.txt"), ours, theirs)
    assert same_shape["status"] == same_shape["body"] == "UNEXPLAINED"
    assert not any("follows from the status" in v for v in same_shape.values())


def test_our_404_for_a_file_in_the_snapshot_fails_even_where_both_apps_agree() -> None:
    missing = _file_answer(404, b"404: Not Found")
    assert _judge(IN_SNAPSHOT, missing, missing) == {"status, database": "UNEXPLAINED"}


@pytest.mark.parametrize(("headers", "wrong"), [
    ({"etag": '"' + "5" * 64 + '"', "last-modified": JOINED}, ["etag, database"]),
    ({"etag": ETAG, "last-modified": MTIME}, ["last-modified, database"]),
    ({"last-modified": JOINED}, ["etag, database"]),
    ({}, ["etag, database", "last-modified, database"]),
])
def test_our_validators_are_checked_against_the_database(headers: dict[str, str],
                                                        wrong: list[str]) -> None:
    """Both apps send the same (wrong) answer: no difference between them, still a
    failure."""
    answer = _file_answer(200, b"alpha", **headers)
    assert _judge(at(FILE, expect=EXPECT), answer, answer) == dict.fromkeys(
        wrong, "UNEXPLAINED")


def test_right_validators_and_an_error_without_them_pass() -> None:
    right = _file_answer(200, b"alpha", etag=ETAG, **{"last-modified": JOINED})
    assert _judge(at(FILE, expect={"status": "200", **EXPECT}), right, right) == {}
    refused = _file_answer(416, b"416: Range Not Satisfiable")
    assert _judge(at(FILE, expect=EXPECT), refused, refused) == {}
    wrong_on_416 = _file_answer(416, b"", etag='"' + "5" * 64 + '"')
    assert _judge(at(FILE, expect=EXPECT), wrong_on_416, wrong_on_416) == {
        "etag, database": "UNEXPLAINED"}


def test_a_status_difference_without_a_rule_explains_nothing_else() -> None:
    ours = _file_answer(500, b"500: Internal Server Error")
    theirs = _file_answer(200, b"alpha")
    found = _judge(at(FILE), ours, theirs)
    assert found["status"] == found["body"] == "UNEXPLAINED"
    assert not any("follows from the status" in v for v in found.values())


def test_a_length_follows_a_body_difference_only_when_it_measures_the_body() -> None:
    ours = _file_answer(416, b"416: Range Not Satisfiable")
    theirs = _file_answer(416, b"")
    assert _judge(at(FILE), ours, theirs)["content-length"] == parity.FOLLOWS_BODY
    lying = Answer(416, {"content-length": "99"}, b"416: Range Not Satisfiable")
    assert _judge(at(FILE), lying, theirs)["content-length"] == "UNEXPLAINED"


def test_the_checkpoint_listing_title_is_the_only_difference_allowed() -> None:
    ours = _file_answer(200, LISTING_OURS)
    theirs = _file_answer(200, LISTING_THEIRS)
    found = _judge(at(CHECKPOINT[:-len(STAMP) - 1]), ours, theirs)
    assert "empty title" in found["body"]
    extra = _file_answer(200, LISTING_OURS.replace(b"</body>", b"<a href=\"./x/\">x</a></body>"))
    assert _judge(at(CHECKPOINT[:-len(STAMP) - 1]), extra, theirs)["body"] == "UNEXPLAINED"
