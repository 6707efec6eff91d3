"""Precondition evaluation in RFC 9110 §13.2.2 order, no database."""

from datetime import UTC, datetime

import pytest

from pulp_content_asgi.protocol.conditional import Outcome, evaluate

ETAG = '"0f1e2d"'
MODIFIED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
BEFORE = "Mon, 01 Jan 2024 00:00:00 GMT"
EXACT = "Tue, 02 Jan 2024 03:04:05 GMT"
AFTER = "Wed, 03 Jan 2024 00:00:00 GMT"


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, Outcome.PROCEED),
        ({"If-None-Match": ETAG}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": f'"x", {ETAG}'}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": f"W/{ETAG}"}, Outcome.NOT_MODIFIED),  # weak comparison
        ({"If-None-Match": "*"}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": '"other"'}, Outcome.PROCEED),
        ({"If-None-Match": "garbage"}, Outcome.PROCEED),
        ({"If-Modified-Since": EXACT}, Outcome.NOT_MODIFIED),
        ({"If-Modified-Since": AFTER}, Outcome.NOT_MODIFIED),
        ({"If-Modified-Since": BEFORE}, Outcome.PROCEED),
        ({"If-Modified-Since": "yesterday"}, Outcome.PROCEED),
        # If-None-Match wins over If-Modified-Since
        ({"If-None-Match": '"other"', "If-Modified-Since": AFTER}, Outcome.PROCEED),
        ({"If-Match": ETAG}, Outcome.PROCEED),
        ({"If-Match": "*"}, Outcome.PROCEED),
        ({"If-Match": '"other"'}, Outcome.FAILED),
        ({"If-Match": f"W/{ETAG}"}, Outcome.FAILED),  # strong comparison
        ({"If-Match": "garbage"}, Outcome.FAILED),
        ({"If-Unmodified-Since": BEFORE}, Outcome.FAILED),
        ({"If-Unmodified-Since": EXACT}, Outcome.PROCEED),
        ({"If-Unmodified-Since": "garbage"}, Outcome.PROCEED),
        # If-Match present: If-Unmodified-Since is not evaluated
        ({"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, Outcome.PROCEED),
        ({"If-Match": '"other"', "If-None-Match": ETAG}, Outcome.FAILED),
    ],
)
def test_preconditions_for_get(headers, outcome):
    assert evaluate("GET", headers, ETAG, MODIFIED) is outcome


def test_head_is_conditional_like_get():
    assert evaluate("HEAD", {"If-None-Match": ETAG}, ETAG, MODIFIED) is Outcome.NOT_MODIFIED


def test_without_validators_only_wildcards_match():
    assert evaluate("GET", {"If-None-Match": "*"}, None, None) is Outcome.PROCEED
    assert evaluate("GET", {"If-Modified-Since": AFTER}, None, None) is Outcome.PROCEED
    assert evaluate("GET", {"If-Match": "*"}, None, None) is Outcome.FAILED
