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


# --- the live path (run_column) with a stand-in pytest: no Pulp stack

#: A stand-in for ``python -m pytest``: writes the JUnit file its ``--junitxml`` names
#: from plan.json (phase -> [test name, failure tag or null]; a phase not in the plan
#: writes none) and logs its arguments to calls.jsonl, both next to it.
FAKE_PYTEST = """
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
xml = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml="))
phase = os.path.basename(xml).rsplit(".", 2)[1]
with open(os.path.join(here, "calls.jsonl"), "a") as calls:
    calls.write(json.dumps([phase, sys.argv[1:]]) + "\\n")
with open(os.path.join(here, "plan.json")) as source:
    cases = json.load(source).get(phase)
if cases is None:
    sys.exit(0)
body = "".join(
    f'<testcase classname="{CLASSNAME}" name="{name}">'
    + (f'<{tag} message="boom">AssertionError</{tag}>' if tag else "") + "</testcase>"
    for name, tag in cases)
with open(xml, "w") as out:
    out.write(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
sys.exit(1 if any(tag for _, tag in cases) else 0)
"""
CLASSNAME = "pulpcore.tests.functional.api.using_plugin.test_content_path"


def _passing(count: int) -> list[tuple[str, str | None]]:
    return [(f"t{i}", None) for i in range(count)]


def _live_run(tmp_path, monkeypatch, plan: dict[str, list[tuple[str, str | None]]],
              repeat: int = 0) -> tuple[run.Column, list[tuple[str, bool, str]],
                                        list[tuple[str, list[str]]]]:
    """``run_column`` of a CI-slice column of ours, pytest replaced by FAKE_PYTEST and
    ``stacks.up`` by a recorder: (column, the stacks brought up, pytest's calls)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nCLASSNAME = {CLASSNAME!r}\n{FAKE_PYTEST}")
    fake.chmod(0o755)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    ups: list[tuple[str, bool, str]] = []
    monkeypatch.setattr(run, "PYTHON", str(fake))
    monkeypatch.setattr(run.stacks, "up", lambda stack, side, fresh=False, proxy="snippet":
                        ups.append((side, fresh, proxy)))
    column = run.Column("asgi", "stock")
    run.run_column(run.stacks.layout(False), column, ["some.module"],
                   str(tmp_path / "ci-stock-asgi"), "ci", 2, repeat)
    calls_file = tmp_path / "calls.jsonl"
    calls = [tuple(json.loads(line)) for line in calls_file.read_text().splitlines()]
    return column, ups, calls  # type: ignore[return-value]


MINIMUM = {"parallel": _passing(run.MIN_EXECUTED["ci"]["parallel"]),
           "serial": _passing(run.MIN_EXECUTED["ci"]["serial"])}


def test_a_live_run_with_enough_tests_passes_the_gate(tmp_path, monkeypatch):
    column, ups, calls = _live_run(tmp_path, monkeypatch, MINIMUM)
    assert [phase for phase, _ in calls] == ["parallel", "serial"]
    assert column.returncodes == [0, 0] and ups == []
    assert run.gate([column]) == []


def test_a_live_run_that_executed_too_few_fails_the_gate(tmp_path, monkeypatch):
    """The live path judges a phase as ``--report-only`` does (``record_phase``)."""
    short = {**MINIMUM, "serial": _passing(run.MIN_EXECUTED["ci"]["serial"] - 1)}
    column, _, _ = _live_run(tmp_path, monkeypatch, short)
    assert column.returncodes == [0, 0]
    assert run.gate([column]) == [
        f"stock/asgi: serial: {run.MIN_EXECUTED['ci']['serial'] - 1} tests executed, "
        f"fewer than the {run.MIN_EXECUTED['ci']['serial']} this slice must run"]


def test_a_live_phase_without_a_junit_file_fails_the_gate(tmp_path, monkeypatch):
    column, _, _ = _live_run(tmp_path, monkeypatch, {"parallel": MINIMUM["parallel"]})
    problems = run.gate([column])
    assert any("no JUnit file" in p and p.endswith(".serial.xml") for p in problems)
    assert any("serial: 0 tests executed" in p for p in problems)


def test_record_phase_is_the_report_only_judgement(tmp_path):
    """The same file judged live and reloaded gives the same problems."""
    xml = tmp_path / "ci-stock-asgi.serial.xml"
    _junit(xml, run.MIN_EXECUTED["ci"]["serial"] - 1)
    live = _column("asgi")
    run.record_phase(live, str(xml), "ci", "serial")
    assert live.problems == [f"serial: {run.MIN_EXECUTED['ci']['serial'] - 1} tests "
                             f"executed, fewer than the {run.MIN_EXECUTED['ci']['serial']} "
                             "this slice must run"]
    unknown = _column("asgi")
    run.record_phase(unknown, str(xml), "nightly", "serial")
    assert [p.split(" of ")[0] for p in unknown.problems] == ["unknown slice 'nightly'"]


def test_a_failed_test_is_repeated_on_a_fresh_stack(tmp_path, monkeypatch):
    failing = {**MINIMUM, "serial": [*MINIMUM["serial"], ("test_x", "failure")]}
    plan = {**failing, "repeat0": [("test_x", None)], "repeat1": [("test_x", "failure")]}
    column, ups, calls = _live_run(tmp_path, monkeypatch, plan, repeat=2)
    test_id = f"{CLASSNAME}::test_x"
    assert column.repeats == {test_id: ["passed", "failed"]}
    assert ups == [("asgi", True, "stock")] * 2
    assert [phase for phase, _ in calls] == ["parallel", "serial", "repeat0", "repeat1"]
    assert calls[2][1][-2] == run._node(test_id)  # the failed test alone, by node id
    assert run.gate([column]) == [f"stock/asgi: {run._short(test_id)} failed",
                                  f"stock/asgi: {run._short(test_id)} failed 1 of 2 repeats"]


def test_a_repeat_that_did_not_run_the_test_fails_the_gate(tmp_path, monkeypatch):
    """The baseline's column: its failures do not gate, a repeat that lost its test
    does."""
    failing = {**MINIMUM, "serial": [*MINIMUM["serial"], ("test_x", "failure")]}
    plan = {**failing, "repeat0": [("test_x", None)], "repeat1": [("t0", None)]}
    column, _, _ = _live_run(tmp_path, monkeypatch, plan, repeat=2)
    column.side = "legacy"
    assert run.gate([column]) == [f"stock/legacy: repeat 2: {CLASSNAME}::test_x did not run"]


def test_a_stale_junit_file_is_not_read_as_this_runs(tmp_path):
    """A JUnit file left by an earlier run is removed before pytest starts: a pytest that
    writes none leaves the phase with no file, not with the old results."""
    xml = tmp_path / "ci-stock-asgi.serial.xml"
    _junit(xml, run.MIN_EXECUTED["ci"]["serial"])
    column = _column("asgi")
    run._execute(column, [sys.executable, "-c", "pass"], {}, str(xml))
    assert not xml.exists()
    run.record_phase(column, str(xml), "ci", "serial")
    assert f"no JUnit file {xml}" in column.problems
    assert column.outcomes == {}


# --- main's exit status follows the gate (``--report-only`` on fabricated files)

def _main(tmp_path, monkeypatch, side: str, serial: dict[str, str] | None = None) -> object:
    results = tmp_path / ".dev" / "conformance"
    results.mkdir(parents=True)
    _finished_run(results, side, serial=serial)
    monkeypatch.setattr(run.stacks, "ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["conformance.run", "--slice", "ci", "--proxy", "stock",
                                      "--only", side, "--report-only"])
    with pytest.raises(SystemExit) as exited:
        run.main()
    assert (results / "report-ci.md").exists()
    return exited.value.code


def test_main_exits_1_when_the_gate_fails(tmp_path, monkeypatch):
    assert _main(tmp_path, monkeypatch, "asgi", serial={"test_x": "failure"}) == 1


def test_main_exits_0_when_the_gate_passes(tmp_path, monkeypatch):
    assert _main(tmp_path, monkeypatch, "asgi") == 0


# --- EXPLAINED: a note needs the test, the layout and the failure text to match

EXPLAINED_ID = ("pulpcore.tests.functional.api.using_plugin.test_content_cache::"
                "test_full_workflow")


@pytest.mark.parametrize(("proxy", "message", "explained"), [
    ("snippet", "AssertionError: 1.iso assert 'MISS' == 'HIT'", True),
    ("stock", "AssertionError: 1.iso assert 'MISS' == 'HIT'", False),  # another layout
    ("snippet", "AssertionError: 2.iso", False),  # another failure
])
def test_an_explanation_needs_its_layout_and_its_failure_text(proxy, message, explained):
    column = run.Column("legacy", proxy)
    note = run._explain(EXPLAINED_ID, column, run.Outcome("failed", message))
    assert bool(note) is explained


def test_an_explanation_for_any_layout_matches_both():
    test_id = ("pulpcore.tests.functional.api.using_plugin.test_content_delivery::"
               "test_handling_remote_artifact_on_demand_streaming_failure")
    outcome = run.Outcome("failed", "Failed: DID NOT RAISE ClientPayloadError")
    for proxy in ("snippet", "stock"):
        assert "database's state" in run._explain(test_id, run.Column("legacy", proxy), outcome)
