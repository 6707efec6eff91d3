"""Run pulpcore's own content-app functional tests against the local Pulp, once per
column: each content app (ours: ``asgi``; pulpcore-content: ``legacy``, the baseline)
behind each nginx layout (``snippet``: our shipped snippet; ``stock``: Pulp's own images,
nginx defaults), and write a report.

    python -m conformance.run [--slice full|ci] [--only asgi|legacy]
                              [--proxy snippet|stock|both] [--repeat N] [--report PATH]
    python -m conformance.run --report-only [...]   # the report from the last runs' files

Each column runs on a fresh stack (new database, new folder, ``conformance/stack.py``)
as two pytest processes, as in Pulp's CI: tests marked ``parallel`` under xdist, then the
others one by one. The run **fails closed**: a pytest exit status other than 0 (all
passed) or 1 (some failed), a missing JUnit file, fewer executed tests than the slice's
minimum, or any failure or error of our app (repeats included) makes the command exit 1.
The tests in ``FLAKY`` and every test that failed in a column are run ``--repeat`` more
times in that column and reported with their pass rate.

Our app's runs load ``conformance.allowances``: two assertions on a custom reason phrase
(ASGI has none) read the same text from our body, and behind the stock layout one
assertion on curl's wording of a cut download accepts curl's wording of the same cut when
the length is declared; each time that happens is logged and counted in the report.
Nothing else is excused.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

from conformance import stack as stacks

PULPCORE = "pulpcore.tests.functional.api"
PULP_FILE = "pulp_file.tests.functional.api"
CERTGUARD = "pulp_certguard.tests.functional.api"

#: Every functional test module that exercises the content app (reference §5.2).
FULL = [
    f"{PULPCORE}.using_plugin.test_content_access",
    f"{PULPCORE}.using_plugin.test_content_cache",
    f"{PULPCORE}.using_plugin.test_content_delivery",
    f"{PULPCORE}.using_plugin.test_content_directory",
    f"{PULPCORE}.using_plugin.test_content_path",
    f"{PULPCORE}.using_plugin.test_content_promotion",
    f"{PULPCORE}.using_plugin.test_checkpoint",
    f"{PULPCORE}.using_plugin.test_contentguard",
    f"{PULPCORE}.using_plugin.test_distributions",
    f"{PULPCORE}.using_plugin.test_proxy",
    f"{PULPCORE}.using_plugin.test_reclaim_disk_space",
    f"{PULPCORE}.using_plugin.test_repo_versions",
    f"{PULPCORE}.test_artifact_distribution",
    f"{PULP_FILE}.test_download_policies",
    f"{PULP_FILE}.test_mime_types",
    f"{PULP_FILE}.test_distributed_publication",
    f"{PULP_FILE}.test_acs",
    f"{PULP_FILE}.test_auto_publish",
    f"{CERTGUARD}.test_x509_certguard",
    f"{CERTGUARD}.test_rhsm_certguard",
]
#: Not run: with DOMAIN_ENABLED the API lives under /pulp/<domain>/api/v3/ and the client
#: bindings on PyPI are generated without domains (Pulp's CI regenerates them from the
#: live schema). The domains stack is checked by ``make parity-domains`` and our tests.
#: A few minutes for CI: listings, paths, guards, ranges, policies, checkpoints. Not the
#: cache workflow nor on-demand delivery (see FLAKY): they stay in FULL, with rates.
CI = [
    f"{PULPCORE}.using_plugin.test_content_path",
    f"{PULPCORE}.using_plugin.test_checkpoint",
    f"{PULPCORE}.using_plugin.test_content_directory",
    f"{PULPCORE}.using_plugin.test_contentguard",
    f"{PULP_FILE}.test_download_policies",
    f"{PULP_FILE}.test_mime_types",
    f"{CERTGUARD}.test_x509_certguard",
]
#: Tests seen to flip between runs of the same column (report history): each is run
#: ``--repeat`` more times per column and reported with its pass rate.
FLAKY = [
    f"{PULPCORE}.using_plugin.test_content_cache::test_full_workflow",
    f"{PULPCORE}.using_plugin.test_content_delivery::test_remote_artifact_url_update",
    f"{PULPCORE}.using_plugin.test_content_delivery::test_remote_content_changed_with_on_demand",
    f"{PULPCORE}.using_plugin.test_content_delivery::"
    "test_handling_remote_artifact_on_demand_streaming_failure",
    f"{PULPCORE}.using_plugin.test_reclaim_disk_space::test_reclaim_on_demand_content",
    # Wall-clock bound: its second GET must come within the stack's 3 s
    # DISTRIBUTED_PUBLICATION_RETENTION_PERIOD of the distribution-update task. Failed once
    # for our app at load 12-19 (2026-11-29: PATCH answered 23:19:29, GET 404 at 23:19:34
    # in nginx's log), then passed 5 of 5 repeats; pulpcore's own check is the same query.
    f"{PULP_FILE}.test_distributed_publication::test_old_content_is_served_within_retention_period",
]
#: Fewest tests a column must execute (passed, failed or errors; skips do not count),
#: per slice and phase: exactly what pulpcore 3.123.1 collects (full: 65 parallel + 64
#: serial; ci: 13 + 32). A column that ran fewer lost a test to an import, collection or
#: fixture problem, or a new skip (six modules have a single test in a phase): the run
#: fails until this is looked at. More is fine (a newer pulpcore adds tests).
MIN_EXECUTED = {"full": {"parallel": 65, "serial": 64}, "ci": {"parallel": 13, "serial": 32}}
PHASES = (("parallel", "parallel"), ("serial", "not parallel"))
SIDES = ("asgi", "legacy")
PROXY_CHOICES = {"snippet": ["snippet"], "stock": ["stock"], "both": ["snippet", "stock"]}

#: Failures explained: (test, nginx layout or "any", regex over the real failure text,
#: cause). Shown next to the failure's own text when all three match. Found by running
#: the tests by hand against pulpcore-content behind each layout and reading nginx's
#: error log (``.dev/pulp/logs/nginx-error.log``).
EXPLAINED: list[tuple[str, str, str, str]] = [
    ("test_full_workflow", "snippet", r"AssertionError: 1\.iso",
     "the stack's layout, not pulpcore-content: the test's get_from_url leaves after the "
     "headers of an on-demand 1.iso; with proxy_buffering off nginx passes the hang-up "
     "on at once, pulpcore-content's handler is cancelled before it writes the cache "
     "entry, and the next request is a MISS, not the HIT the test wants. With Pulp's "
     "stock layout nginx reads the whole small answer first and the test passes (see "
     "the stock/legacy column). Our app finishes the answer whatever the client does "
     "(docs/differences.md)"),
    ("test_remote_content_changed_with_on_demand", "snippet", r"assert not True",
     "the stack's layout, not pulpcore-content: the test wants no byte of a file whose "
     "upstream content changed to reach curl. With proxy_buffering off nginx forwards "
     "pulpcore-content's first bytes before it finds the digest mismatch and resets the "
     "connection (nginx: recv() failed (104: Connection reset by peer)), so curl writes "
     "an output file; Pulp's stock layout buffers the small body and drops it with the "
     "connection (see the stock/legacy column). Our app holds the last 256 KiB until "
     "the digest is checked (docs/differences.md)"),
    ("test_handling_remote_artifact_on_demand_streaming_failure", "any",
     r"DID NOT RAISE ClientPayloadError",
     "the database's state, not the app: the test writes its files with seed=123, so "
     "they are the same bytes on every run, and its own second request saves the "
     "artifact. Any later run on the same database is served from storage and its "
     "first request succeeds. Seen for pulpcore-content when its column ran on the "
     "database our column left, and for both apps when repeats shared one: every "
     "column and every repeat now starts from a fresh stack"),
]


@dataclass
class Outcome:
    status: str  # passed, failed, skipped, error
    message: str = ""


@dataclass
class Column:
    """One app behind one proxy layout: how it was run and what it gave."""

    side: str
    proxy: str
    commit: str = ""
    started: str = ""
    seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    returncodes: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: test id -> outcomes of the repeats
    repeats: dict[str, list[str]] = field(default_factory=dict)
    allowances: list[dict[str, object]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.proxy}/{self.side}"


def _environment(stack: stacks.Layout, side: str, proxy: str,
                 allowances_log: str) -> dict[str, str]:
    env = {**stacks.environment(stack), "API_PROTOCOL": "http", "API_HOST": "127.0.0.1",
           "API_PORT": str(stack.nginx), "ADMIN_USERNAME": stacks.ADMIN[0],
           "ADMIN_PASSWORD": stacks.ADMIN[1],
           # Some tests run pulpcore-manager and curl by name.
           "PATH": f"{stacks.BIN}:{os.environ.get('PATH', '')}",
           # conformance.allowances is imported from this checkout.
           "PYTHONPATH": stacks.ROOT, "CONFORMANCE_SIDE": side, "CONFORMANCE_PROXY": proxy}
    if side == "asgi":
        env["CONFORMANCE_ALLOWANCES_LOG"] = allowances_log
    return env


def _site() -> str:
    """site-packages: rooted there, test ids (and JUnit class names) are module paths."""
    import pulpcore

    return os.path.dirname(os.path.dirname(pulpcore.__file__))


#: The pytest plugins these tests need; the other Pulp plugins' (pulp_rpm, pulp_python, …)
#: import their REST client bindings, which the conformance extra does not install.
NEEDED_PLUGINS = ("pulpcore", "pulp_file", "pulp_certguard")


def _blocked_plugins() -> list[str]:
    """``-p no:<name>`` for every installed Pulp plugin's pytest plugin not needed here."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    return [arg for name in sorted(names)
            if name.startswith("pulp_") and name not in NEEDED_PLUGINS
            for arg in ("-p", f"no:{name}")]


#: The interpreter the pytest processes run under (the unit tests put a stand-in here).
PYTHON = sys.executable


def _pytest(xml: str, args: list[str]) -> list[str]:
    plugins = ["-p", "conformance.allowances", *_blocked_plugins()]
    return [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *plugins, "-q",
            "-rfEs", "--timeout", "600", f"--rootdir={_site()}", *args,
            f"--junitxml={xml}"]


def _execute(column: Column, argv: list[str], env: dict[str, str], xml: str) -> None:
    """Run one pytest process; a status other than 0/1 or no JUnit file is a problem."""
    if os.path.exists(xml):
        os.unlink(xml)
    column.commands.append(shlex.join(argv))
    code = subprocess.run(argv, env=env, cwd="/tmp", check=False).returncode
    column.returncodes.append(code)
    if code not in (0, 1):
        column.problems.append(f"pytest exited {code} ({os.path.basename(xml)}; 2: "
                               "interrupted, 3: internal error, 4: usage error, 5: no tests)")
    if not os.path.exists(xml):
        column.problems.append(f"no JUnit file {xml}")


def run_column(stack: stacks.Layout, column: Column, modules: list[str], prefix: str,
               slice_: str, workers: int, repeat: int) -> None:
    """The column's two phases, then ``repeat`` runs of its flaky and failed tests, each
    on a fresh stack (some tests leave state that changes their next run: artifacts
    saved from fixture files with a fixed seed)."""
    log = f"{prefix}.allowances.jsonl"
    for stale in (log, f"{prefix}.meta.json"):
        if os.path.exists(stale):
            os.unlink(stale)
    env = _environment(stack, column.side, column.proxy, log)
    started = time.monotonic()
    column.started = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"
    column.commit = _commit()
    for suffix, marker in PHASES:
        xml = f"{prefix}.{suffix}.xml"
        extra = ["-n", str(workers)] if suffix == "parallel" else []
        _execute(column, _pytest(xml, ["-m", marker, *extra, "--pyargs", *modules]), env, xml)
        record_phase(column, xml, slice_, suffix)
    flaky = [t for t in column.outcomes if _function(t) in FLAKY
             or column.outcomes[t].status in ("failed", "error")]
    for n in range(repeat if flaky else 0):
        stacks.up(stack, column.side, fresh=True, proxy=column.proxy)
        xml = f"{prefix}.repeat{n}.xml"
        _execute(column, _pytest(xml, [_node(t) for t in flaky]), env, xml)
        for test, outcome in outcomes([xml]).items():
            column.repeats.setdefault(test, []).append(outcome.status)
        for test in flaky:
            if len(column.repeats.get(test, [])) != n + 1:
                column.problems.append(f"repeat {n + 1}: {test} did not run")
    column.seconds = round(time.monotonic() - started, 1)
    column.allowances = _allowances(log)
    with open(f"{prefix}.meta.json", "w") as out:
        json.dump({k: v for k, v in asdict(column).items() if k != "outcomes"}, out, indent=1)


def _split(test_id: str) -> tuple[str, list[str], str]:
    """A JUnit test id ``pkg.module[.Class]::name[params]`` as (module file, classes,
    name), found on disk: importing the module would set Django up in this process."""
    dotted, name = test_id.split("::", 1)
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = os.path.join(_site(), *parts[:cut]) + ".py"
        if os.path.exists(path):
            return path, parts[cut:], name
    raise SystemExit(f"no module file for the test {test_id}")


def _function(test_id: str) -> str:
    """``module::function`` of a test id (class and parameters dropped)."""
    path, _, name = _split(test_id)
    module = os.path.relpath(path, _site())[:-3].replace(os.sep, ".")
    return f"{module}::{name.split('[')[0]}"


def _node(test_id: str) -> str:
    """The pytest node id (file path::[Class::]name[params]) of a JUnit test id."""
    path, classes, name = _split(test_id)
    return "::".join([path, *classes, name])


def _allowances(path: str) -> list[dict[str, object]]:
    if not os.path.exists(path):
        return []
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def outcomes(paths: list[str]) -> dict[str, Outcome]:
    """Test id (``classname::name``) -> outcome, with the failure's own message."""
    found: dict[str, Outcome] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            test_id = f"{case.get('classname')}::{case.get('name')}"
            outcome = Outcome("passed")
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    text = " ".join((child.get("message") or child.text or "").split())
                    status = {"failure": "failed", "skipped": "skipped"}.get(child.tag, "error")
                    outcome = Outcome(status, text[:400])
                    break
            found[test_id] = outcome
    return found


def _too_few(found: dict[str, Outcome], slice_: str, suffix: str) -> list[str]:
    """The problem when a phase executed fewer tests than its slice must."""
    executed = sum(1 for o in found.values() if o.status != "skipped")
    if executed >= MIN_EXECUTED[slice_][suffix]:
        return []
    return [f"{suffix}: {executed} tests executed, fewer than the "
            f"{MIN_EXECUTED[slice_][suffix]} this slice must run"]


def load_column(prefix: str) -> Column | None:
    """A column from the files a finished run left (``--report-only``): the JUnit files
    and the minimum counts are checked again, so a report rebuilt from a run that left
    no results never passes."""
    if not os.path.exists(f"{prefix}.meta.json"):
        return None
    with open(f"{prefix}.meta.json") as source:
        column = Column(**json.load(source))
    slice_ = os.path.basename(prefix).split("-", 1)[0]
    for suffix, _ in PHASES:
        record_phase(column, f"{prefix}.{suffix}.xml", slice_, suffix)
    return column


def record_phase(column: Column, xml: str, slice_: str, suffix: str) -> None:
    """One phase's JUnit file into ``column``: its outcomes, and as problems a missing
    file and fewer executed tests than the slice's minimum. The live run (``run_column``)
    and ``--report-only`` (``load_column``) judge a phase here, the same way."""
    problems = [] if os.path.exists(xml) else [f"no JUnit file {xml}"]
    found = outcomes([xml])
    problems += (_too_few(found, slice_, suffix) if slice_ in MIN_EXECUTED
                 else [f"unknown slice {slice_!r} of {xml}"])
    column.problems += [p for p in problems if p not in column.problems]
    column.outcomes.update(found)


def _explain(test_id: str, column: Column, outcome: Outcome) -> str:
    test = _function(test_id).split("::")[-1]
    for name, proxy, pattern, cause in EXPLAINED:
        if (name == test and proxy in (column.proxy, "any")
                and re.search(pattern, outcome.message)):
            return f" — {cause}"
    return ""


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", stacks.ROOT, *args], capture_output=True,
                              text=True, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pulp_content_asgi",
                "conformance", "pyproject.toml", ":!conformance/*.md")
    return git("rev-parse", "HEAD") + (" (with uncommitted changes)" if dirty else "")


def _short(test_id: str) -> str:
    return (test_id.replace("pulpcore.tests.functional.api.", "pulpcore ")
            .replace("pulp_file.tests.functional.api.", "pulp_file ")
            .replace("pulp_certguard.tests.functional.api.", "certguard "))


def _cell(outcome: Outcome | None, repeats: list[str]) -> str:
    mark = "-" if outcome is None else {"passed": "pass", "failed": "**FAIL**",
                                        "error": "**ERROR**", "skipped": "skip"}[outcome.status]
    if repeats:
        mark += f" (+{sum(r == 'passed' for r in repeats)}/{len(repeats)})"
    return mark


def _allowance_line(c: Column, a: dict[str, object]) -> str:
    if "reason_phrase" in a:
        return (f"* {c.key} `{a['test']}`: `{a['assertion']}`: needle `{a['needle']}` not "
                f"in the phrase `{a['reason_phrase']}` ({a['status']}), found in the body's "
                f"reason `{str(a['body_reason'])[:200]}`")
    return (f"* {c.key} `{a['test']}`: `{a['assertion']}`: needle `{a['needle']}` not in "
            f"curl's stderr (exit {a['status']}), which says `{a['found']}`")


def report(path: str, columns: list[Column], command: str, gate: list[str]) -> None:
    """The markdown report: provenance, the columns side by side, every failure's text,
    pass rates of the repeated tests and the allowances that fired."""
    names = sorted({t for c in columns for t in c.outcomes})
    lines = [
        "# Conformance: pulpcore's content-app functional tests", "",
        f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`{command}` at commit `{_commit()}`, pulpcore {_version('pulpcore')}, "
        f"against the local Pulp of `conformance/stack.py` (nginx in front, "
        f"`CONTENT_PATH_PREFIX={stacks.PREFIX}`, cache on), a fresh stack per column. "
        "**asgi** is this project; **legacy** is pulpcore-content, the baseline. "
        "**snippet**: nginx as in our shipped snippet (HTTP/1.1 to the app, no buffering); "
        "**stock**: nginx as in Pulp's images (nginx defaults: HTTP/1.0, buffering on). "
        "None of these tests needs the internet.", "",
        f"**Gate: {'FAILED' if gate else 'passed'}.**"
        + "".join(f"\n* {problem}" for problem in gate), "",
        "## Columns", "",
        "| Column | Commit | Started | Duration | pytest exit codes | passed | failed "
        "| errors | skipped | allowances used |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in columns:
        tally = {s: sum(1 for o in c.outcomes.values() if o.status == s)
                 for s in ("passed", "failed", "error", "skipped")}
        lines.append(f"| {c.key} | {c.commit[:12] or 'not recorded'} | {c.started} | "
                     f"{c.seconds / 60:.1f} min | "
                     f"{', '.join(map(str, c.returncodes))} | {tally['passed']} | "
                     f"{tally['failed']} | {tally['error']} | {tally['skipped']} | "
                     f"{len(c.allowances) if c.side == 'asgi' else 'n/a'} |")
    lines += ["", "Commands, in order, per column (run from /tmp with the stack's "
              "environment; `(+k/N)` in the table below: passed k of N repeats):", ""]
    for c in columns:
        lines.append(f"* {c.key}:")
        lines += [f"  * `{cmd}`" for cmd in c.commands]
    used = [(c, a) for c in columns for a in c.allowances]
    lines += ["", "## Allowances that fired", "",
              "Each row: an assertion on the HTTP reason phrase that our status line "
              "cannot carry, satisfied by the same text in our body, or on curl's wording "
              "of a cut download behind the stock layout, satisfied by curl's wording of "
              "the same cut when the length was declared (`conformance/allowances.py`).", ""]
    lines += [_allowance_line(c, a) for c, a in used] or ["* none"]
    lines += ["", "## Results", "",
              "| Test | " + " | ".join(c.key for c in columns) + " | Failure text |",
              "|---|" + "---|" * len(columns) + "---|"]
    for name in names:
        cells, notes = [], []
        for c in columns:
            outcome = c.outcomes.get(name)
            cells.append(_cell(outcome, c.repeats.get(name, [])))
            if outcome is not None and outcome.status != "passed" and outcome.message:
                notes.append(f"{c.key}: {outcome.message}{_explain(name, c, outcome)}")
        note = " / ".join(notes).replace("|", "\\|")
        lines.append(f"| `{_short(name)}` | " + " | ".join(cells) + f" | {note} |")
    rates = [(c, t, r) for c in columns for t, r in sorted(c.repeats.items())]
    if rates:
        lines += ["", "## Repeated tests", "",
                  "| Column | Test | main run | repeats passed | pass rate (all runs) |",
                  "|---|---|---|---|---|"]
        for c, test, runs in rates:
            main = c.outcomes.get(test)
            passed = sum(r == "passed" for r in runs) + (main is not None
                                                         and main.status == "passed")
            lines.append(f"| {c.key} | `{_short(test)}` | "
                         f"{main.status if main else '-'} | "
                         f"{sum(r == 'passed' for r in runs)}/{len(runs)} | "
                         f"{passed}/{len(runs) + 1} |")
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")


def gate(columns: list[Column]) -> list[str]:
    """Why the run fails: every column's problems, and every failure of our app."""
    found = [f"{c.key}: {p}" for c in columns for p in c.problems]
    for c in columns:
        if c.side != "asgi":
            continue
        found += [f"{c.key}: {_short(t)} {o.status}" for t, o in sorted(c.outcomes.items())
                  if o.status in ("failed", "error")]
        found += [f"{c.key}: {_short(t)} failed {sum(r != 'passed' for r in runs)} of "
                  f"{len(runs)} repeats" for t, runs in sorted(c.repeats.items())
                  if any(r != "passed" for r in runs)]
    return found


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slice", choices=("full", "ci"), default="full")
    parser.add_argument("--only", choices=SIDES, default=None)
    parser.add_argument("--proxy", choices=sorted(PROXY_CHOICES), default="both")
    parser.add_argument("--repeat", type=int, default=None,
                        help="extra runs of FLAKY and failed tests per column "
                             "(default 5 for full, 0 for ci)")
    parser.add_argument("--report", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the files of the last runs")
    args = parser.parse_args()
    repeat = args.repeat if args.repeat is not None else (5 if args.slice == "full" else 0)
    if args.slice == "full" and repeat < 5 and not args.report_only:
        parser.error("--repeat must be at least 5 for the full run (rates, not samples)")
    sides = [args.only] if args.only else list(SIDES)
    modules = FULL if args.slice == "full" else CI
    # The full slice's files are kept in the repository (committed with the report), so
    # the report can be rebuilt from any clone and columns run in different sessions (each
    # with its own commit and date) combine; the CI slice's stay in the scratch folder.
    out_dir = (os.path.join(stacks.ROOT, "conformance", "results") if args.slice == "full"
               else os.path.join(stacks.ROOT, ".dev", "conformance"))
    os.makedirs(out_dir, exist_ok=True)
    stack = stacks.layout(False)
    columns: list[Column] = []
    for proxy in PROXY_CHOICES[args.proxy]:
        for side in sides:
            prefix = os.path.join(out_dir, f"{args.slice}-{proxy}-{side}")
            if args.report_only:
                loaded = load_column(prefix)
                if loaded is None:
                    columns.append(Column(side, proxy, problems=["no run found"]))
                else:
                    columns.append(loaded)
                continue
            column = Column(side, proxy)
            stacks.up(stack, side, fresh=True, proxy=proxy)
            try:
                run_column(stack, column, modules, prefix, args.slice, args.workers, repeat)
            finally:
                stacks.down(stack)
            columns.append(column)
    default = ("conformance/report.md" if args.slice == "full"
               else os.path.join(out_dir, "report-ci.md"))
    path = args.report or os.path.join(stacks.ROOT, default)
    problems = gate(columns)
    report(path, columns, "python -m conformance.run " + shlex.join(sys.argv[1:]), problems)
    print(f"Report: {path}")
    for problem in problems:
        print(f"FAIL {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
