"""reliability/report.md's faults section (tests/adversarial.py): every fault test of issue
#17 lands in it with its outcome, the figures the tests record survive the trip from a
lane to the runner, and a failed fault test is listed under Failures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests import adversarial

OUTAGE = "tests/test_db_outage_e2e.py::test_outage_gives_503_then_recovers_without_restart"
REDIS = "tests/test_cache_e2e.py::test_redis_outage_is_invisible_to_clients"
DISK = ("tests/test_ondemand_disk_full_e2e.py::"
        "test_a_full_working_directory_keeps_nothing_and_recovers")


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    """The module's tallies are process-wide: start and leave them empty."""
    def empty() -> None:
        for store in (adversarial.OUTCOMES, adversarial.DURATIONS, adversarial.STORMS,
                      adversarial.SLOW, adversarial.FAULTS):
            store.clear()
        for tally in adversarial.TALLIES.values():
            tally.counts.clear()
            tally.failures.clear()

    empty()
    yield
    empty()


@pytest.mark.parametrize("nodeid", [OUTAGE, REDIS, DISK,
                                    "tests/test_port_in_use_e2e.py::test_reuse_port_shares_"
                                    "the_port_on_purpose",
                                    "tests/test_ondemand_hosts_e2e.py::test_two_hosts_fetch_"
                                    "once_each_and_neither_waits_for_the_other",
                                    "tests/test_ondemand_saves_e2e.py::test_redis_killed_"
                                    "during_the_save_loses_nothing"])
def test_every_fault_test_is_in_the_faults_section(nodeid):
    assert adversarial.section_of(nodeid) == "faults"


@pytest.mark.parametrize("nodeid", [
    "tests/test_cache_e2e.py::test_miss_then_hit",
    "tests/test_fuzz_e2e.py::test_fuzzed_headers",
    "tests/test_abort_storm_e2e.py::test_storm[granian]",
])
def test_other_tests_are_not(nodeid):
    assert adversarial.section_of(nodeid) != "faults"


def test_a_lanes_figures_reach_the_report(tmp_path):
    adversarial.OUTCOMES.update({OUTAGE: "passed", REDIS: "passed", DISK: "failed"})
    adversarial.record_fault("PostgreSQL stopped under load", "first 200 +0.31 s")
    handed = json.loads(json.dumps(adversarial.results()))  # what a lane writes
    for store in (adversarial.OUTCOMES, adversarial.FAULTS):
        store.clear()
    adversarial.absorb(handed)  # what the runner reads back

    report = tmp_path / "report.md"
    adversarial.write_report(str(report), 60.0, "1")
    text = report.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Faults"))
    assert row.split(" | ")[1] == "2/3"  # tests passed
    faults = text.split("## Faults", 1)[1]
    assert "| `test_outage_gives_503_then_recovers_without_restart` (test_db_outage_e2e.py) " \
           "| passed |" in faults
    assert "(test_ondemand_disk_full_e2e.py) | failed |" in faults
    assert "| PostgreSQL stopped under load | first 200 +0.31 s |" in faults
    failures = text.split("## Failures", 1)[1].split("##", 1)[0]
    assert f"- test failed: `{DISK}`" in failures


def test_no_fault_tests_no_section(tmp_path):
    report = tmp_path / "report.md"
    adversarial.write_report(str(report), 1.0, None)
    assert "## Faults" not in report.read_text()


def test_the_runs_own_problems_are_failures_in_the_report(tmp_path):
    """A lane that crashed or selected nothing leaves no outcome to list: the runner's
    problems are the report's failures, never "None."."""
    report = tmp_path / "report.md"
    adversarial.write_report(str(report), 1.0, "1", problems=["lane e2e-2 failed (pytest "
                                                               "exit status -9)"])
    failures = report.read_text().split("## Failures", 1)[1].split("##", 1)[0]
    assert "- the run: lane e2e-2 failed (pytest exit status -9)" in failures
    assert "None." not in failures


@pytest.mark.parametrize(("args", "narrowed"), [
    ([], False), (["-x"], False), (["-x", "-v", "--maxfail=2"], False),
    (["-k", "targets"], True), (["-ktargets"], True), (["-m", "not slow"], True),
    (["tests/test_fuzz_e2e.py::test_fuzzed_targets"], True), (["--lf"], True),
])
def test_only_options_that_choose_tests_let_a_lane_select_none(args, narrowed):
    from tests.adversarial_lanes import narrows

    assert narrows(args) is narrowed


def test_a_cut_answer_is_malformed_unless_cuts_are_allowed():
    """The framing fuzzer allows a visibly cut last answer; every other use of
    parse_answers still fails on it, and on bytes past a body in any case."""
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    cut = head + b"5\r\nhello\r\n3\r\nwo"
    with pytest.raises(adversarial.Cut):
        adversarial.parse_answers(cut)
    [answer] = adversarial.parse_answers(cut, cut_ok=True)
    assert answer.cut and answer.body == b"hellowo"
    short = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"
    assert adversarial.parse_answers(short, cut_ok=True)[0].body == b"hello"
    with pytest.raises(adversarial.Cut):
        adversarial.parse_answers(short)
    for wrong in (head + b"5\r\nhello world\r\n0\r\n\r\n",  # chunk longer than its size
                  b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello"):  # bytes past it
        with pytest.raises(adversarial.Malformed) as raised:
            adversarial.parse_answers(wrong, cut_ok=True)
        assert not isinstance(raised.value, adversarial.Cut)
