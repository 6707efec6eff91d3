"""The rolling upgrade's cross-version cache check (tests/adversarial.py ``read_cached``)
fails every wrong read: a MISS, wrong bytes, an answer without the cache that no Redis
failure explains, and an excused one whose repeat is not a right HIT. These are the
mutants the check must kill; the e2e test only ever sees right HITs on a healthy run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.adversarial import read_cached

BODY = b"the file"
FAILED = "Redis unavailable (Timeout reading from 127.0.0.1:6379); serving without the " \
         "response cache for 5.0s."


@dataclass
class Answer:
    status_code: int = 200
    content: bytes = BODY
    headers: dict[str, str] = field(default_factory=dict)


def answer(cache: str | None, content: bytes = BODY) -> Answer:
    return Answer(headers={} if cache is None else {"x-pulp-cache": cache}, content=content)


class Reader:
    """A reader answering ``answers`` in turn (the last one repeats); its log records a
    Redis failure for the first request when ``failed``."""

    def __init__(self, *answers: Answer, failed: bool = False) -> None:
        self.answers = list(answers)
        self.asked: list[dict[str, str]] = []
        self.failed = failed

    def ask(self, headers: dict[str, str]) -> Answer:
        self.asked.append(headers)
        return self.answers[min(len(self.asked), len(self.answers)) - 1]

    def log(self) -> str:
        if not self.failed:
            return json.dumps({"level": "INFO", "message": "nothing about Redis"})
        return json.dumps({"level": "WARNING", "message": FAILED,
                           "correlation_id": self.asked[0]["Correlation-ID"]})


def judge(reader: Reader, log: bool = True) -> tuple[str | None, str | None]:
    return read_cached(reader.ask, lambda a: a.status_code == 200 and a.content == BODY,
                       reader.log if log else None, 5.0, deadline=0.3, interval=0.01)


def test_a_right_hit_passes():
    assert judge(Reader(answer("HIT"))) == (None, None)


def test_an_excused_read_passes_once_the_repeat_is_a_right_hit():
    reader = Reader(answer(None), answer(None), answer("HIT"), failed=True)
    problem, note = judge(reader)
    assert problem is None and note is not None and "read again 2 times: HIT" in note


@pytest.mark.parametrize("reader, log", [
    # The cache was asked and did not use the entry (even with a Redis failure logged).
    (Reader(answer("MISS"), answer("HIT"), failed=True), True),
    (Reader(answer("HIT", b"other bytes")), True),  # a hit with the wrong file
    (Reader(answer(None)), True),  # served without the cache, nothing in the log
    (Reader(answer(None), answer("HIT"), failed=True), False),  # pulpcore-content: no log
    (Reader(answer(None), answer("MISS"), failed=True), True),  # excused, repeat a MISS
    (Reader(answer(None), answer("HIT", b"x"), failed=True), True),  # repeat: wrong bytes
    (Reader(answer(None), failed=True), True),  # excused, never asks its cache again
], ids=["miss", "wrong-hit", "unexplained-bypass", "no-log", "repeat-miss",
        "repeat-wrong", "repeat-never-cached"])
def test_every_wrong_read_is_a_problem(reader, log):
    problem, note = judge(reader, log)
    assert problem is not None and note is None
