"""Review (rev14): the plugin corpus's "upstream header" rules are not limited to the
answers whose headers came from an upstream (streamed and first on-demand answers). They
have no ``target`` and no ``cold`` condition, so they also explain a stored file of an
``immediate`` distribution losing its validators or ``Accept-Ranges``: a regression in a
port (or in the responder for plugin content) slips through ``make parity-plugins``.

Each case below is a stored file both apps serve from an artifact; pulpcore-content's
answer carries the header (aiohttp's FileResponse), ours lost it. Each must be
UNEXPLAINED (before fix14 each was called "deliberate").

Seen live (rev14 review): with ``headers["Accept-Ranges"] = "bytes"`` removed from
``serving/responder.py``, ``python -m conformance.parity_plugins --plugins rpm`` reported 84
``accept-ranges: '<absent>' vs 'bytes'`` differences on stored immediate files as
"deliberate ... not the upstream" and 0 unexplained for them; ``--plugins container`` the
same for 88 blob answers. In the committed reports that rule is needed only by cold,
streamed and pull-through rows (294 of 294), so it can be limited to them.
"""

import pytest

from conformance import parity as base
from conformance.parity_plugins import PLUGIN_RULES, PluginProbe

RPM = "/somewhere/else/parity-ab12cd/rpm/immediate/Packages/h/hello-1.0-1.noarch.rpm"
DEB = "/somewhere/else/parity-ab12cd/deb/immediate/pool/main/h/hello/hello_1.0_all.deb"
BLOB = "/pulp/container/parity-ab12cd/container/immediate/blobs/sha256:" + "a" * 64
DATE = "Mon, 30 Nov 2026 00:00:00 GMT"


def verdict(field: str, ours: str, theirs: str, path: str, status: int) -> str:
    probe = PluginProbe("x", path, "GET", plugin="x", policy="immediate")
    return next((rule.why for rule in PLUGIN_RULES + base.RULES if rule.explains(
        base.Difference(field, ours, theirs), probe, status)), "UNEXPLAINED")


@pytest.mark.parametrize("path", [RPM, DEB, BLOB])
@pytest.mark.parametrize(("field", "theirs"), [
    ("last-modified", DATE),
    ("etag", '"5f2b1c-1a2b"'),
    ("accept-ranges", "bytes"),
])
def test_a_stored_file_losing_a_header_is_unexplained(path: str, field: str,
                                                      theirs: str) -> None:
    assert verdict(field, base.ABSENT, theirs, path, 200) == "UNEXPLAINED"


def test_a_stored_rpm_typed_octet_stream_is_unexplained() -> None:
    """A mime-map regression (ours octet-stream where pulpcore-content says x-rpm)."""
    assert verdict("content-type", "application/octet-stream", "application/x-rpm", RPM,
                   200) == "UNEXPLAINED"


# After the fix (fix14): the rules hold where pulpcore-content's headers came from an
# upstream, decided by the probe (cold, streamed, pull-through), not by its path.

HEX = "b" * 64


def upstream_verdict(field: str, ours: str, theirs: str, path: str, status: int,
                     **probe: str) -> str:
    asked = PluginProbe("x", path, "GET", plugin="x", **probe)  # type: ignore[arg-type]
    return next((rule.why for rule in PLUGIN_RULES + base.RULES if rule.explains(
        base.Difference(field, ours, theirs), asked, status)), "UNEXPLAINED")


@pytest.mark.parametrize("probe", [{"policy": "on_demand", "cold": "GET"},
                                   {"policy": "immediate", "cold": "HEAD"},
                                   {"policy": "streamed"}, {"policy": "pull_through"}])
@pytest.mark.parametrize(("field", "ours", "theirs"), [
    ("last-modified", base.ABSENT, DATE),
    ("etag", base.ABSENT, '"5f2b1c-1a2b"'),
    ("accept-ranges", base.ABSENT, "bytes"),
    ("cache-control", base.ABSENT, "max-age=300"),
    ("content-type", "application/octet-stream", "application/x-rpm"),
])
def test_an_upstream_answer_is_explained(probe: dict[str, str], field: str, ours: str,
                                         theirs: str) -> None:
    assert "not the upstream" in upstream_verdict(field, ours, theirs, RPM, 200, **probe)


def test_the_same_file_after_its_cold_fetch_is_unexplained() -> None:
    """The on-demand file's later (stored) answer shares the cold probe's path."""
    assert upstream_verdict("accept-ranges", base.ABSENT, "bytes", RPM, 200,
                            policy="on_demand") == "UNEXPLAINED"


def test_a_cold_blob_etag_must_be_its_own_digest() -> None:
    cold = {"policy": "on_demand", "cold": "GET"}
    assert "not the upstream" in upstream_verdict("etag", f'"{HEX}"', f'"sha256:{HEX}"',
                                                  BLOB, 200, **cold)
    assert upstream_verdict("etag", f'"{"c" * 64}"', f'"sha256:{HEX}"', BLOB, 200,
                            **cold) == "UNEXPLAINED"


@pytest.mark.parametrize("probe", [{"policy": "pull_through"}, {"policy": "streamed"},
                                   {"policy": "pull_through_streamed"}])
def test_a_streamed_simple_page_typed_octet_stream_is_unexplained(probe: dict[str, str]
                                                                  ) -> None:
    """Review (#14): pip skips an index page that is not HTML, so a pull-through simple
    page typed ``application/octet-stream`` where pulpcore-content forwards the upstream's
    ``text/html`` is a bug a client meets, not "a response describes the content"."""
    page = "/somewhere/else/parity-ab12cd/python/pull-through-streamed/simple/hello/"
    assert upstream_verdict("content-type", "application/octet-stream", "text/html", page,
                            200, **probe) == "UNEXPLAINED"


@pytest.mark.parametrize(("ours", "theirs"), [
    ("bytes 0-98/5000", "bytes 0-99/5000"),  # an exclusive end: one byte short
    ("bytes 0-49/5000", "bytes 0-99/5000"),  # half the range asked
    ("bytes 0-11/40", "bytes 0-99/40"),  # a short file's range ended before its last byte
    ("bytes 0-39/40", "bytes 0-99/41"),  # not the same file
])
def test_a_wrong_content_range_is_not_the_old_apps_short_file(ours: str, theirs: str
                                                               ) -> None:
    """Review (#14): the rule for pulpcore-content's ``bytes 0-99/<n>`` on a file shorter
    than 100 bytes matched any ``bytes 0-<x>/<y>`` of ours, so an off-by-one end (a range
    read as an exclusive slice) on a stored 5000-byte file was "old-app bug" too. It holds
    only where ours ends at the file's last byte and the file is that short one."""
    assert verdict("content-range", ours, theirs, RPM, 206) == "UNEXPLAINED"


@pytest.mark.parametrize("size", [12, 40, 84, 99])
def test_the_old_apps_short_file_range_is_still_explained(size: int) -> None:
    """What the committed reports explain: ours ``bytes 0-<n-1>/<n>``, theirs
    ``bytes 0-99/<n>``."""
    assert verdict("content-range", f"bytes 0-{size - 1}/{size}", f"bytes 0-99/{size}", RPM,
                   206).startswith("old-app bug: a range past the end")


def test_a_guarded_upstream_answer_says_private_only_where_the_database_says_guarded() -> None:
    """pulp_container's distributions have a guard: a cold blob's answer says ``private``
    where pulpcore-content forwards the registry's ``max-age``; unguarded, ``private`` is
    unexplained (the rule above wants nothing there)."""
    cold = {"policy": "on_demand", "cold": "GET"}
    guarded = {**cold, "facts": frozenset({base.GUARDED})}
    assert "every answer says private" in upstream_verdict(
        "cache-control", "private", "max-age=31536000", BLOB, 200, **guarded)
    assert upstream_verdict("cache-control", "private", "max-age=31536000", BLOB, 200,
                            **cold) == "UNEXPLAINED"
