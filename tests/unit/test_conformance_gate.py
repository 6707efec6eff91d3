"""The conformance run fails closed (conformance/run.py): pytest runs with ``check=False``
so that a run with failures still writes its report, and these are what turn a run that
crashed, was interrupted or executed nothing into a failed gate."""

from __future__ import annotations

import json
import sys

import pytest

from conformance import run


def _column(side: str = "legacy") -> run.Column:
    return run.Column(side, "stock")


@pytest.mark.parametrize("code", [2, 3, 4, 5])
def test_a_pytest_that_did_not_run_its_tests_fails_the_gate(tmp_path, code):
    column = _column()
    xml = str(tmp_path / "phase.xml")
    run._execute(column, [sys.executable, "-c", f"import sys; sys.exit({code})"], {}, xml)
    problems = run.gate([column])  # pulpcore-content's column: only problems gate it
    assert any(f"pytest exited {code}" in p for p in problems)
    assert any("no JUnit file" in p for p in problems)


def test_a_pytest_killed_by_a_signal_fails_the_gate(tmp_path):
    """A crash (here SIGKILL: subprocess reports -9) is neither 0 nor 1 and leaves no
    JUnit file: both are problems of the column, whichever app it ran against."""
    column = _column("asgi")
    xml = str(tmp_path / "phase.xml")
    run._execute(column, [sys.executable, "-c",
                          "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], {}, xml)
    problems = run.gate([column])
    assert column.returncodes == [-9]
    assert any("pytest exited -9" in p for p in problems)
    assert any("no JUnit file" in p for p in problems)


def test_a_phase_that_executed_nothing_fails_the_gate(tmp_path):
    xml = tmp_path / "phase.xml"
    xml.write_text('<testsuites><testsuite name="pytest">'
                   '<testcase classname="a" name="t"><skipped/></testcase>'
                   "</testsuite></testsuites>")
    found = run.outcomes([str(xml)])
    assert run._too_few(found, "full", "parallel")  # one skipped test: none executed
    column = _column("asgi")
    column.problems += run._too_few(found, "ci", "serial")
    assert run.gate([column])


def test_a_report_rebuilt_from_no_files_fails_the_gate(tmp_path):
    prefix = str(tmp_path / "full-stock-asgi")
    (tmp_path / "full-stock-asgi.meta.json").write_text('{"side": "asgi", "proxy": "stock"}')
    column = run.load_column(prefix)
    assert column is not None
    problems = run.gate([column])
    assert any("no JUnit file" in p for p in problems)
    assert any("executed" in p for p in problems)


def test_a_clean_exit_with_enough_tests_passes(tmp_path):
    xml = tmp_path / "phase.xml"
    cases = "".join(f'<testcase classname="a" name="t{i}"/>' for i in range(32))
    junit = f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'
    column = _column("asgi")
    # A stand-in pytest that writes its JUnit file (a stale one is removed first).
    run._execute(column, [sys.executable, "-c", f"open({str(xml)!r}, 'w').write({junit!r})"],
                 {}, str(xml))
    column.problems += run._too_few(run.outcomes([str(xml)]), "ci", "serial")
    assert run.gate([column]) == []


# --- a failure of ours fails the gate; pulpcore-content's (the baseline) does not

FAILING = "pulpcore.tests.functional.api.using_plugin.test_content_path::test_x"


def _junit(path, count: int, failing: dict[str, str] | None = None) -> None:
    """A JUnit file of ``count`` passing tests plus ``failing`` (name -> tag:
    ``failure`` or ``error``) in test_content_path."""
    classname = "pulpcore.tests.functional.api.using_plugin.test_content_path"
    cases = [f'<testcase classname="a" name="t{i}"/>' for i in range(count)]
    cases += [f'<testcase classname="{classname}" name="{name}"><{tag} message="boom">'
              f"AssertionError</{tag}></testcase>" for name, tag in (failing or {}).items()]
    path.write_text('<testsuites><testsuite name="pytest">' + "".join(cases)
                    + "</testsuite></testsuites>")


def _finished_run(tmp_path, side: str, serial: dict[str, str] | None = None,
                  repeats: dict[str, list[str]] | None = None) -> run.Column:
    """A column as ``--report-only`` loads it from the files a CI-slice run left: enough
    tests in both phases (``MIN_EXECUTED``), pytest exit codes as the run recorded them."""
    prefix = tmp_path / f"ci-stock-{side}"
    _junit(tmp_path / f"ci-stock-{side}.parallel.xml", run.MIN_EXECUTED["ci"]["parallel"])
    _junit(tmp_path / f"ci-stock-{side}.serial.xml", run.MIN_EXECUTED["ci"]["serial"], serial)
    meta = {"side": side, "proxy": "stock", "returncodes": [0, 1 if serial else 0],
            "repeats": repeats or {}}
    (tmp_path / f"ci-stock-{side}.meta.json").write_text(json.dumps(meta))
    column = run.load_column(str(prefix))
    assert column is not None
    return column


def test_a_clean_run_of_ours_passes_the_gate(tmp_path):
    assert run.gate([_finished_run(tmp_path, "asgi")]) == []


@pytest.mark.parametrize(("tag", "status"), [("failure", "failed"), ("error", "error")])
def test_a_failed_test_of_ours_fails_the_gate(tmp_path, tag, status):
    column = _finished_run(tmp_path, "asgi", serial={"test_x": tag})
    assert run.gate([column]) == [f"stock/asgi: pulpcore using_plugin.test_content_path::"
                                  f"test_x {status}"]


def test_a_failed_repeat_of_ours_fails_the_gate(tmp_path):
    """The main run passed; one of five repeats of the (flaky) test failed."""
    column = _finished_run(tmp_path, "asgi", repeats={
        FAILING: ["passed", "passed", "failed", "passed", "passed"]})
    assert run.gate([column]) == ["stock/asgi: pulpcore using_plugin.test_content_path::"
                                  "test_x failed 1 of 5 repeats"]


def test_a_failure_that_passed_every_repeat_still_fails_the_gate(tmp_path):
    column = _finished_run(tmp_path, "asgi", serial={"test_x": "failure"},
                           repeats={FAILING: ["passed"] * 5})
    assert run.gate([column]) == [f"stock/asgi: {run._short(FAILING)} failed"]


def test_the_baselines_failures_do_not_gate(tmp_path):
    """pulpcore-content's failures are reported (and explained where known), not ours."""
    column = _finished_run(tmp_path, "legacy", serial={"test_x": "failure"},
                           repeats={FAILING: ["failed"] * 5})
    assert run.gate([column]) == []
    ours = _finished_run(tmp_path, "asgi", serial={"test_x": "failure"})
    assert run.gate([column, ours]) == [f"stock/asgi: {run._short(FAILING)} failed"]
