"""The bench's flame graphs (bench/profiles.py): where they go and how they are named, the
py-spy command, when a run takes them, what the report says of them (a link, or
"profile: failed: <reason>" while the run goes on), the heaviest frames read from an SVG,
and one real recording of a Python process. No server, no database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import plan, profiles, report, servers

pytestmark = pytest.mark.fast

OURS = next(c for c in servers.CONTENDERS if c.name == "asgi-granian")
needs_pyspy = pytest.mark.skipif(not os.access(profiles.PYSPY, os.X_OK),
                                 reason=f"py-spy not installed at {profiles.PYSPY} "
                                        "(the test and bench extras install it)")


def _contender(name: str) -> servers.Contender:
    return next(c for c in servers.CONTENDERS if c.name == name)


def _profiler(tmp_path: Path, executable: str = profiles.PYSPY,
              enabled: bool = True) -> tuple[profiles.Profiler, list[dict], list[int]]:
    entries: list[dict[str, Any]] = []
    saves: list[int] = []
    stem = str(tmp_path / "2026-12-01T0000Z-vm-full")
    return (profiles.Profiler(enabled, stem, entries, lambda: saves.append(len(entries)),
                              executable), entries, saves)


def test_a_flame_graph_is_named_for_its_scenario_contender_and_workers() -> None:
    stem = "/x/bench/results/2026-12-01T0000Z-vm-full"
    assert profiles.folder(stem) == stem + "-profiles"
    assert profiles.file_name("ondemand", "asgi-granian", 2) == "ondemand-asgi-granian-w2.svg"


def test_published_is_profiled_at_c64_else_at_the_highest_level() -> None:
    assert profiles.level((16, 64, 256)) == 64
    assert profiles.level((16, 256)) == 256
    assert profiles.level((8,)) == 8


def test_py_spy_samples_the_family_on_cpu_without_stopping_it() -> None:
    argv = profiles.command("/venv/bin/py-spy", 4242, "/out/x.svg")
    assert argv[:4] == ["/venv/bin/py-spy", "record", "--pid", "4242"]
    assert {"--subprocesses", "--nonblocking", "--function"} <= set(argv)
    assert argv[argv.index("--format") + 1] == "flamegraph"
    assert argv[argv.index("--output") + 1] == "/out/x.svg"
    assert not {"--idle", "--native", "--gil", "--rate"} & set(argv)
    pinned = profiles.command("/venv/bin/py-spy", 4242, "/out/x.svg", cpus="1")
    assert pinned == ["taskset", "-c", "1", *argv]


@pytest.mark.parametrize(("argv", "on"), [
    ([], True), (["--quick"], True), (["--only-ondemand"], True), (["--no-profiles"], False),
    (["--smoke"], False), (["--smoke", "--profiles", "--scenarios", "ondemand"], True),
])
def test_profiles_are_on_except_in_smoke_runs_unless_asked(argv: list[str], on: bool) -> None:
    made = plan.make_plan(plan.arguments(argv))
    assert made.profiles is on and made.meta()["profiles"] is on


def test_our_app_and_pulpcore_content_without_cache_are_profiled_not_nginx() -> None:
    profiled = {c.name for c in servers.CONTENDERS if profiles.wanted(c)}
    assert profiled == {"asgi-granian", "asgi-uvicorn", "asgi-granian-cache",
                        "asgi-granian-metrics", "asgi-granian-pool8",
                        "pulpcore-content", "pulpcore-content-uvloop"}


def test_with_profiles_off_no_extra_run_is_made(tmp_path: Path) -> None:
    profiler, entries, _ = _profiler(tmp_path, enabled=False)
    ran: list[int] = []
    assert profiler.take("published", OURS, 1, os.getpid(), None,
                         lambda: ran.append(1) or {}) is None
    assert (ran, entries, os.listdir(tmp_path)) == ([], [], [])


def test_without_py_spy_the_profile_fails_and_says_why(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-py-spy")
    profiler, entries, saves = _profiler(tmp_path, executable=missing)
    ran: list[int] = []
    entry = profiler.take("ondemand", OURS, 1, os.getpid(), None,
                          lambda: ran.append(1) or {})
    assert entry is not None and entry["status"] == "failed"
    assert entry["error"].startswith(f"{missing}: No such file or directory")
    assert "pip install -e '.[bench]'" in entry["error"]
    assert (ran, entries, saves) == ([], [entry], [1])  # recorded and saved, nothing run


def _results(found: list[dict[str, Any]]) -> dict[str, Any]:
    return {"meta": {"profiles": True}, "profiles": found}


def test_the_report_links_each_flame_graph_and_names_failures() -> None:
    recorded = {"scenario": "published", "contender": "asgi-granian", "workers": 1,
                "connections": 64, "status": "recorded", "samples": 1234, "errors": 2,
                "file": "2026-12-01T0000Z-vm-full-profiles/published-asgi-granian-w1.svg",
                "top": [{"frame": "send (pulp_content_asgi/serving/send.py:10)",
                         "self_share": 0.25}]}
    failed = {"scenario": "ondemand", "contender": "pulpcore-content", "workers": 1,
              "status": "failed", "error": "Permission Denied | try root"}
    below = {**recorded, "scenario": "large", "connections": 8,
             "native": {"samples": 2665, "top": [{"dso": "libcrypto.so.3", "share": 0.57},
                                                 {"dso": "[kernel.kallsyms]", "share": 0.285}]},
             "native_file": "2026-12-01T0000Z-vm-full-profiles/large-asgi-granian-w1.perf.txt"}
    refused = {**recorded, "scenario": "slow", "native_error": "Permission denied | paranoid"}
    lines = report.profiles_table(_results([failed, recorded, below, refused]))
    assert lines[0] == "## Profiles (py-spy flame graphs, perf below Python)"
    rows = [line for line in lines if line.startswith(("| published", "| ondemand",
                                                       "| large", "| slow"))]
    assert rows == [
        "| published (c64) | asgi-granian | 1 | [published-asgi-granian-w1.svg]"
        "(2026-12-01T0000Z-vm-full-profiles/published-asgi-granian-w1.svg) | 1,234 "
        "(2 errors) | `send (pulp_content_asgi/serving/send.py:10)` 25% |  |",
        "| large (c8) | asgi-granian | 1 | [published-asgi-granian-w1.svg]"
        "(2026-12-01T0000Z-vm-full-profiles/published-asgi-granian-w1.svg) | 1,234 "
        "(2 errors) | `send (pulp_content_asgi/serving/send.py:10)` 25% | "
        "[`libcrypto.so.3` 57%; `[kernel.kallsyms]` 28%]"
        "(2026-12-01T0000Z-vm-full-profiles/large-asgi-granian-w1.perf.txt) (2,665 samples) |",
        "| slow (c64) | asgi-granian | 1 | [published-asgi-granian-w1.svg]"
        "(2026-12-01T0000Z-vm-full-profiles/published-asgi-granian-w1.svg) | 1,234 "
        "(2 errors) | `send (pulp_content_asgi/serving/send.py:10)` 25% | "
        "perf: Permission denied \\| paranoid |",
        "| ondemand | pulpcore-content | 1 | profile: failed: Permission Denied \\| try "
        "root | |  |  |"]
    assert report.profiles_table(_results([])) == []


def _box(name: str, x: int, w: int, y: int) -> str:
    return (f'<g><title>{name} ({w:,} samples, {w}.00%)</title><rect x="0%" y="{y}" '
            f'width="1%" height="15" fg:x="{x}" fg:w="{w}"/><text>{name}</text></g>')


def _svg(boxes: list[tuple[str, int, int, int]], icicle: bool = False) -> str:
    """An inferno-shaped flame graph: depth d at y = 100 - 16 d (the root at the bottom),
    or at 16 d when ``icicle``."""
    body = "".join(_box(n, x, w, 16 * d if icicle else 100 - 16 * d) for n, x, w, d in boxes)
    return ('<svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:fg="http://github.com/jonhoo/inferno"><g id="frames">{body}</g></svg>')


@pytest.mark.parametrize("icicle", [False, True])
def test_the_heaviest_frames_are_read_by_self_time_from_the_svg(icicle: bool) -> None:
    # all 100 → handle 60 → &lt;lambda&gt; 45; all → read 30 → &lt;lambda&gt; 5
    svg = _svg([("all", 0, 100, 0), ("handle (a.py:1)", 0, 60, 1),
                ("&lt;lambda&gt; (b.py:2)", 0, 45, 2), ("read (c.py:3)", 60, 30, 1),
                ("&lt;lambda&gt; (b.py:2)", 60, 5, 2)], icicle)
    assert profiles.top_frames(svg) == [
        {"frame": "<lambda> (b.py:2)", "self_share": 0.5},
        {"frame": "read (c.py:3)", "self_share": 0.25},
        {"frame": "handle (a.py:1)", "self_share": 0.15}]
    native = _svg([("all", 0, 10, 0),
                   ('process 42:&quot;/venv/bin/pulp-content-asgi&quot;', 0, 10, 1),
                   ("a (a.py:1)", 0, 4, 2)], icicle)
    assert profiles.top_frames(native) == [
        {"frame": "process 42 (no Python frame)", "self_share": 0.6},
        {"frame": "a (a.py:1)", "self_share": 0.4}]
    chain = _svg([("all", 0, 10, 0), ("a (a.py:1)", 0, 10, 1), ("b (b.py:1)", 0, 10, 2)],
                 icicle)
    assert profiles.top_frames(chain) == [{"frame": "b (b.py:1)", "self_share": 1.0}]


SPIN = """
import sys
def spin_for_the_profile():
    total = 0
    for i in range(3_000_000):
        total += i * i
    return total
sys.stdin.readline()  # waits, idle, until the test has py-spy attached
spin_for_the_profile()
"""


@needs_pyspy
def test_a_real_process_is_recorded_into_a_flame_graph_naming_its_functions(
        tmp_path: Path) -> None:
    profiler, entries, _ = _profiler(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.PIPE, text=True)
    try:
        def run() -> dict:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
            return {"exit": child.wait(60)}

        entry = profiler.take("published", OURS, 1, child.pid, None, run, connections=64)
    finally:
        child.kill()
        child.wait()
    assert entry is not None and entry["status"] == "recorded", entry
    assert entries == [entry] and entry["connections"] == 64
    assert entry["run"] == {"exit": 0} and entry["samples"] > 0
    svg = tmp_path / entry["file"]
    assert svg.name == "published-asgi-granian-w1.svg" and svg.parent.name.endswith("-profiles")
    assert "spin_for_the_profile" in svg.read_text()
    assert entry["top"][0]["frame"].startswith("spin_for_the_profile")
    if shutil.which("perf"):  # perf sampled the same run (bench/native.py)
        assert entry["native_file"] == os.path.relpath(
            str(svg).removesuffix(".svg") + ".perf.txt", tmp_path), entry
        assert (tmp_path / entry["native_file"]).is_file()
        assert entry["native"]["samples"] > 0 and entry["native"]["top"], entry


@needs_pyspy
def test_a_process_py_spy_cannot_read_is_a_failed_profile_with_its_message(
        tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    profiler, _, _ = _profiler(tmp_path)
    entry = profiler.take("slow", _contender("pulpcore-content"), 1, gone.pid, None,
                          lambda: {})
    assert entry is not None and entry["status"] == "failed" and entry["error"]
    assert "py-spy did not start" not in entry["error"]  # py-spy's own words instead


def test_an_error_outside_the_profiled_run_is_a_failed_profile_not_a_crash(
        tmp_path: Path) -> None:
    """Whatever goes wrong while profiling (here the flame graph's folder cannot be
    written), the caller gets a failed entry and keeps its measured runs."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    profiler, entries, _ = _profiler(tmp_path)
    profiler.stem = str(blocker / "run")  # a folder under a file: makedirs fails

    def run() -> dict:
        raise AssertionError("not reached")

    found = profiler.take("ondemand", _contender("asgi-granian"), 1, os.getpid(), None, run)
    assert found is not None and found["status"] == "failed"
    assert entries == [found]


def test_py_spys_reason_is_its_error_line_not_the_end_of_a_backtrace() -> None:
    said = object.__new__(profiles._Output)
    said.lines = ["py-spy> Sampling process 100 times a second", "thread 'main' panicked at "
                  "src/x.rs:1: failed to read", "stack backtrace:", "   7: std::rt::lang_start",
                  "   8: main"]
    assert said.reason("none") == ("thread 'main' panicked at src/x.rs:1: failed to read; "
                                   "stack backtrace:")
    said.lines = ["py-spy> one", "py-spy> two", "py-spy> three"]
    assert said.reason("none") == "two; three"
    said.lines = []
    assert said.reason("none") == "none"
