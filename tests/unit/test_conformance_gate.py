"""The conformance run fails closed (conformance/run.py): pytest runs with ``check=False``
so that a run with failures still writes its report, and these are what turn a run that
crashed, was interrupted or executed nothing into a failed gate."""

from __future__ import annotations

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
