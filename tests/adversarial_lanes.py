"""``make adversarial``: the adversarial suite as pytest processes side by side (lanes),
merged into one ``reliability/report.md``.

One session after the other took 33 minutes on this 2-core machine, most of it one
request at a time (a client and a server taking turns on the CPU, so one core idles),
waiting (clients paced on purpose, servers starting, upstream timeouts) or in pure
Hypothesis properties that need no server. So the suite runs in :data:`LANES`, each a
pytest process of its own, all at once:

* each lane has its own test folder (``CONTENT_ASGI_TEST_ROOT``: settings, media, logs;
  ``tests/conftest.py`` empties it at the start of a session) and, if it needs one, its
  own database (``CONTENT_ASGI_TEST_DB``, a copy of the migrated template), so no lane
  clears or drops what another uses;
* every lane gets the same ``--hypothesis-seed`` and profile, so a run can be repeated;
* every lane writes its outcomes, per-test times and figures as JSON
  (``ADVERSARIAL_RESULTS``); the runner adds them up and writes the report.

The lanes together select exactly what ``pytest -m adversarial tests`` selects: the last
lane takes every adversarial test the others do not name. A lane's tests run one after
the other, as in any pytest session; lanes share the CPU.

It fails (exit status 1) when a lane fails, crashes or writes no results, when a lane
selects no test (unless ``--args`` narrowed the run on purpose), and when no test ran at
all.

    python -m tests.adversarial_lanes --seed 123 --report reliability/report.md [--args "-x"]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests import adversarial
from tests.helpers import ROOT

#: pytest's exit status when it collected no test.
NO_TESTS = 5


@dataclass(frozen=True)
class Lane:
    """One pytest process: what it runs, where it keeps its files, which database."""

    name: str
    #: pytest arguments that choose its tests (paths, ``--ignore``).
    selection: tuple[str, ...]
    #: Its own database kind (``devtools/databases.py``), or None: the checkout's test
    #: database (only one lane may use it) or none at all (pure tests).
    database: str | None = None
    #: Written to the terminal as it runs (one lane); the others go to log files,
    #: printed when they end.
    live: bool = False

    @property
    def root(self) -> str:
        return os.path.join(ROOT, ".dev", "test" if self.name == "e2e" else f"test-{self.name}")


#: Modules of the second server lane, chosen so that the two server lanes take about the
#: same time (measured: reliability/README.md): the rolling upgrade, the slow clients and
#: the abort storms (servers under many clients, and clients paced on purpose) and the
#: upstream faults (timeouts of a second or two), and the fault tests (each with its own
#: PostgreSQL cluster, Redis, tmpfs or servers; adversarial.FAULT_MODULES).
SECOND = ("tests/test_rolling_upgrade_e2e.py", "tests/test_slow_clients_e2e.py",
          "tests/test_abort_storm_e2e.py", "tests/test_upstream_faults_e2e.py",
          *(f"tests/{module}.py" for module in adversarial.FAULT_MODULES
            if module.endswith("_e2e")))

LANES = (
    # Hypothesis properties of the pure HTTP rules: no database, no server.
    Lane("pure", ("tests/http", "tests/unit")),
    Lane("e2e-2", SECOND, database="test2"),
    # Everything else (the last lane takes whatever the others do not name): the fuzzers,
    # the guard corpus, matching over rows, the amplification measurement.
    # --ignore paths absolute: tests/conftest.py changes the working directory before
    # collection, and pytest resolves them against the directory it is in then.
    Lane("e2e", ("tests", *(f"--ignore={os.path.join(ROOT, m)}"
                            for m in ("tests/http", "tests/unit", *SECOND))), live=True),
)


@dataclass
class Run:
    lane: Lane
    process: subprocess.Popen[bytes]
    results: str
    log: str | None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    tests: int = 0
    #: The Hypothesis profile and scale the lane's tests ran with (from its results).
    profile: tuple[str, int] | None = None


def _start(lane: Lane, seed: str, extra: list[str], state: str) -> Run:
    from pulp_content_asgi.devtools import databases

    results = os.path.join(state, f"{lane.name}.json")
    env = {**os.environ, "HYPOTHESIS_PROFILE": "adversarial",
           "CONTENT_ASGI_TEST_ROOT": lane.root, "ADVERSARIAL_RESULTS": results}
    env.pop("ADVERSARIAL_REPORT", None)  # the runner writes the report
    if lane.database:
        env["CONTENT_ASGI_TEST_DB"] = databases.name(lane.database)
    # pytest's --durations (set-up, call and tear-down apart) in each lane's output.
    argv = [sys.executable, "-m", "pytest", "-q", "-m", "adversarial", "--durations=30",
            f"--hypothesis-seed={seed}", *extra, *lane.selection]
    log = None if lane.live else os.path.join(state, f"{lane.name}.log")
    output = None if log is None else open(log, "wb")  # noqa: SIM115 (closed below)
    try:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT if output else None)
    finally:
        if output is not None:
            output.close()
    return Run(lane, process, results, log)


def _uses_db(lane: Lane) -> bool:
    """Whether the lane's tests need a database (all but the pure ones)."""
    return lane.database is not None or lane is LANES[-1]


def _template(lane: Lane) -> None:
    """Make ``lane``'s database, and with it the migrated template if there is none yet
    (``devtools/migrated.py``); the lane's session makes its database afresh again."""
    from pulp_content_asgi.devtools import databases

    dbname = databases.name(lane.database) if lane.database else _test_db()
    settings = subprocess.run(
        [sys.executable, "-m", "pulp_content_asgi.devtools.settings", lane.root, dbname],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pulp_content_asgi.devtools.migrated"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PULP_SETTINGS": settings})


def _test_db() -> str:
    from tests.helpers import DBNAME

    return DBNAME


def _finish(run: Run, narrowed: bool) -> list[str]:
    """The ended lane's log printed and its results absorbed; what went wrong with it."""
    status = run.process.returncode
    if run.log is not None:
        with open(run.log, errors="replace") as log:
            print(f"\n===== lane {run.lane.name} ({' '.join(run.lane.selection)}) =====")
            print(log.read(), end="", flush=True)
    problems = []
    if status == NO_TESTS and narrowed:
        return []  # --args chose no test of this lane
    if status == NO_TESTS:
        problems.append(f"lane {run.lane.name} selected no test")
    elif status != 0:
        problems.append(f"lane {run.lane.name} failed (pytest exit status {status})")
    try:
        with open(run.results) as out:
            found = json.load(out)
    except (OSError, ValueError) as exc:
        return [*problems, f"lane {run.lane.name} wrote no results: {exc}"]
    twice = sorted(set(found["outcomes"]) & set(adversarial.OUTCOMES))
    if twice:
        problems.append(f"lane {run.lane.name} ran tests another lane ran: {twice[:5]}")
    adversarial.absorb(found)
    run.profile = (str(found.get("profile")), int(found.get("scale", 0)))
    run.tests = len(found["outcomes"])
    run.seconds = float(found["seconds"])
    return problems


#: pytest options that choose fewer tests: with one of them a lane may rightly select none.
NARROWING = ("-k", "-m", "--deselect", "--lf", "--last-failed", "--sw", "--stepwise")


def narrows(extra: list[str]) -> bool:
    """Whether ``--args`` choose tests (``-k``, ``-m``, node ids…), so that a lane may
    select none; ``-x`` or ``-v`` do not, and a lane selecting nothing then fails."""
    return any(arg.startswith(NARROWING) or "::" in arg for arg in extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", required=True, help="--hypothesis-seed of every lane")
    parser.add_argument("--report", required=True, help="the report to write")
    parser.add_argument("--args", default="", help="more pytest arguments for every lane")
    options = parser.parse_args(argv)
    extra = shlex.split(options.args)
    state = os.path.join(ROOT, ".dev", "adversarial")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    began = time.monotonic()
    # Lanes without a database start at once; the others once the migrated template
    # exists (a first run migrates once, not once per lane at the same time).
    runs = [_start(lane, options.seed, extra, state) for lane in LANES if not _uses_db(lane)]
    try:
        _template(next(lane for lane in LANES if _uses_db(lane)))
    except (OSError, subprocess.CalledProcessError) as exc:
        # No server lane can run: stop the others and say so in the report, which
        # would otherwise keep the previous run's figures.
        for run in runs:
            run.process.terminate()
            run.process.wait()
        problem = f"the test databases could not be made ({exc}); no server lane ran"
        adversarial.write_report(options.report, time.monotonic() - began, options.seed,
                                 problems=[problem])
        print(f"make adversarial: {problem}", file=sys.stderr)
        return 1
    runs += [_start(lane, options.seed, extra, state) for lane in LANES if _uses_db(lane)]
    for run in runs:  # all of them, before any lane's log is printed under the live one
        run.process.wait()
        run.seconds = time.monotonic() - run.started
    problems = [p for run in runs for p in _finish(run, narrowed=narrows(extra))]
    seconds = time.monotonic() - began
    if not adversarial.OUTCOMES:
        problems.append("no adversarial test ran")
    lanes = [f"{r.lane.name} ({r.tests} tests, {r.seconds / 60:.1f} min)" for r in runs]
    # The profile the lanes ran with (each lane's own record), not this process's.
    profiles = {r.profile for r in runs if r.profile is not None}
    if len(profiles) != 1:
        problems.append(f"the lanes ran with different or unknown profiles: {profiles}")
    adversarial.write_report(options.report, seconds, options.seed, lanes,
                             next(iter(profiles)) if len(profiles) == 1 else ("mixed", 0),
                             problems=problems)
    outcomes = list(adversarial.OUTCOMES.values())
    print(f"\nmake adversarial: {outcomes.count('passed')} passed, "
          f"{outcomes.count('failed')} failed, {outcomes.count('skipped')} skipped in "
          f"{seconds / 60:.1f} min ({'; '.join(lanes)}); report: {options.report}")
    for problem in problems:
        print(f"make adversarial: {problem}", file=sys.stderr)
    return 1 if problems or "failed" in outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
