"""Range and If-Range rules, table-driven, no database (RFC 9110 §14, read as nginx reads
it; tests/test_ranges_nginx_e2e.py compares the same headers with a real nginx)."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulp_content_asgi.protocol.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    closing,
    if_range_allows,
    part_header,
    select,
    unsatisfied_content_range,
)

SIZE = 1000
R = ByteRange


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", [R(0, 0)]),
        ("bytes=0-499", [R(0, 499)]),
        ("bytes=500-", [R(500, 999)]),
        ("bytes=-200", [R(800, 999)]),
        ("bytes=-5000", [R(0, 999)]),  # suffix longer than the file: all of it
        ("bytes=990-5000", [R(990, 999)]),  # end past the size is truncated
        ("bytes=999-999", [R(999, 999)]),
        ("BYTES=10-19", [R(10, 19)]),  # the unit is case-insensitive
        ("bytes= 10 - 19 ", [R(10, 19)]),  # spaces around numbers and dash
        ("bytes=0010-0019", [R(10, 19)]),
        # Several ranges: in the order asked, each pinned (a multipart/byteranges 206).
        ("bytes=0-1,5-6", [R(0, 1), R(5, 6)]),
        ("bytes=5-6,0-1", [R(5, 6), R(0, 1)]),
        ("bytes=0-1, 1-2", [R(0, 1), R(1, 2)]),
        ("bytes=0-5,3-8", [R(0, 5), R(3, 8)]),  # overlap, but fewer bytes than the file
        ("bytes=0-1,-2", [R(0, 1), R(998, 999)]),
        # A range that selects nothing is dropped from a set that has others.
        ("bytes=1-2,5-1", [R(1, 2)]),
        ("bytes=5000-6000,0-1", [R(0, 1)]),
        # Positions up to 2**63 - 1 are positions (nginx's off_t).
        (f"bytes=0-{2**63 - 1}", [R(0, 999)]),
        (f"bytes=-{2**63 - 1}", [R(0, 999)]),
    ],
)
def test_satisfiable_ranges_resolve_to_inclusive_positions(header, expected):
    assert select(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [None, "items=0-5", "0-5", "bytes=", "bytes = 0-1", "bytes 0-1",
     # More bytes than the file holds, through overlapping ranges: the whole file.
     "bytes=0-999,0-999", "bytes=0-,0-", "bytes=-600,0-500"],
)
def test_ignored_range_headers_mean_the_whole_representation(header):
    assert select(header, SIZE) is None


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "bytes=-1-11", "bytes=-", "bytes=a-b", "bytes=1.5-2", "bytes=0-1;",
     "bytes=0-1,abc", "bytes=0-1,x", "bytes=0-1,,5-6", "bytes=0-1,", "bytes=,",
     "bytes=- 5", "bytes=0-1\t", "bytes=\u0661-\u0662",  # only ASCII digits
     # Beyond nginx's off_t: invalid (never a 500: Python would not convert thousands of
     # digits).
     f"bytes=0-{2**63}", f"bytes={2**63}-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000],
)
def test_invalid_range_sets_are_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        select(header, SIZE)


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=1000-", 1000), ("bytes=5000-6000", 1000), ("bytes=-0", 1000), ("bytes=5-1", 1000),
    ("bytes=5-", 0), ("bytes=1000-,2000-", 1000)])
def test_ranges_outside_the_representation_are_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        select(header, size)


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=-10", "bytes=0-5", "bytes=-0"])
def test_a_range_from_byte_zero_of_an_empty_representation_sends_it_whole(header):
    """nginx's answer to an empty file: 200, not 416."""
    assert select(header, 0) is None


_SPEC = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 1200), st.integers(0, 1200)),
    st.builds(lambda a: f"{a}-", st.integers(0, 1200)),
    st.builds(lambda a: f"-{a}", st.integers(0, 1200)),
)


@given(specs=st.lists(_SPEC, min_size=1, max_size=6), size=st.integers(0, 1100))
def test_selected_ranges_lie_inside_and_never_exceed_the_representation(specs, size):
    header = "bytes=" + ",".join(specs)
    try:
        selected = select(header, size)
    except RangeNotSatisfiable:
        return
    if selected is None:
        return
    assert selected and all(0 <= r.start <= r.end < size for r in selected)
    assert sum(r.length for r in selected) <= size


def test_multipart_pieces_are_laid_out_as_nginx_lays_them_out():
    assert part_header("b0", "text/plain", R(5, 6), 20) == (
        b"\r\n--b0\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/20\r\n\r\n")
    assert closing("b0") == b"\r\n--b0--\r\n"


def test_content_range_headers():
    assert ByteRange(5, 9).content_range(10) == "bytes 5-9/10"
    assert ByteRange(5, 9).length == 5
    assert unsatisfied_content_range(10) == "bytes */10"
    assert unsatisfied_content_range(None) == "bytes */*"


MODIFIED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("if_range", "allowed"),
    [
        (None, True),
        ('"abc"', True),
        ('"other"', False),
        ('W/"abc"', False),  # weak validators never satisfy If-Range
        ("Tue, 02 Jan 2024 03:04:05 GMT", True),
        ("Tue, 02 Jan 2024 03:04:06 GMT", False),
        ("not a date", False),
    ],
)
def test_if_range_honours_range_only_for_the_current_representation(if_range, allowed):
    assert if_range_allows(if_range, '"abc"', MODIFIED) is allowed
