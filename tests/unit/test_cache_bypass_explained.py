"""Which answers served without the response cache the rolling upgrade's cross-version
cache check excuses (tests/adversarial.py ``cache_bypass_explained``): only those a Redis
failure logged by that very process explains, by the request itself or within the
cool-down before it."""

import datetime
import json

from tests.adversarial import cache_bypass_explained

SENT = datetime.datetime(2026, 11, 30, 1, 2, 3, 500_000, tzinfo=datetime.UTC).timestamp()
FAILED = "Redis unavailable (Timeout reading from 127.0.0.1:6379); serving without the " \
         "response cache for 5.0s."


def line(offset: float, message: str = FAILED, correlation_id: str | None = "other") -> str:
    moment = datetime.datetime.fromtimestamp(SENT + offset, datetime.UTC)
    return json.dumps({"time": moment.strftime("%Y-%m-%dT%H:%M:%S.") +
                       f"{moment.microsecond // 1000:03d}Z", "level": "WARNING",
                       "logger": "pulp_content_asgi.cache.store", "message": message,
                       "process": 1, "correlation_id": correlation_id})


def explained(*lines: str, answered: float = 0.3) -> str | None:
    return cache_bypass_explained("\n".join(lines), SENT, SENT + answered, 5.0, "mine")


def test_the_requests_own_redis_failure_explains_it():
    assert "its own Redis call failed" in explained(line(60, correlation_id="mine"))


def test_a_failure_logged_while_it_was_served_or_in_the_cool_down_before_explains_it():
    assert explained(line(0.1)) is not None
    assert explained(line(-4.9)) is not None


def test_a_failure_before_the_cool_down_or_after_the_answer_does_not():
    assert explained(line(-5.2)) is None
    assert explained(line(0.5)) is None


def test_other_warnings_text_lines_and_an_empty_log_do_not():
    busy = "All 64 Redis connections of the response cache were busy for 0.25s"
    assert explained(line(0.1, message=busy)) is None
    assert explained("pulp [mine]: pulp_content_asgi.cache.store:WARNING: " + FAILED) is None
    assert explained("{not json", "") is None
    assert explained() is None
