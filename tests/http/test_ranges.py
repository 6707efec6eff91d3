"""Range and If-Range rules, table-driven, no database (RFC 9110 §14, pulpcore parity)."""

from datetime import UTC, datetime

import pytest

from pulp_content_asgi.protocol.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    if_range_allows,
    parse_range_header,
    resolve_range,
    unsatisfied_content_range,
)

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-499", ByteRange(0, 499)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=-200", ByteRange(800, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # suffix longer than the file: all of it
        ("bytes=990-5000", ByteRange(990, 999)),  # end past the size is truncated
        ("bytes=999-999", ByteRange(999, 999)),
        ("BYTES = 10 - 19", ByteRange(10, 19)),
        # Positions of thousands of digits are "past the end", never a 500 (Python will not
        # convert integers of more than 4300 digits).
        ("bytes=0-" + "9" * 5000, ByteRange(0, 999)),
        ("bytes=-" + "9" * 5000, ByteRange(0, 999)),
        ("bytes=0-18446744073709551616", ByteRange(0, 999)),
    ],
)
def test_satisfiable_ranges_resolve_to_inclusive_positions(header, expected):
    assert resolve_range(parse_range_header(header), SIZE) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=-1-11", "bytes=5-1", "bytes=0-1,5-6", "items=0-5", "bytes=", "bytes=-",
     "bytes=a-b", "0-5", "bytes=1.5-2"],
)
def test_malformed_range_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range_header(header)


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=5000-6000", 1000),
                                              ("bytes=0-", 0), ("bytes=-0", 1000),
                                              ("bytes=-10", 0),
                                              ("bytes=" + "9" * 5000 + "-", 1000)])
def test_range_outside_the_representation_is_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        resolve_range(parse_range_header(header), size)


def test_absent_range_means_whole_representation():
    assert parse_range_header(None) is None


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
