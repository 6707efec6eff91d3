"""Flame graphs of the servers under load (issue #18): where the next bottleneck is.

After a scenario's measured runs of a contender at a worker count, ``bench/run.py`` does
ONE more run of that scenario with py-spy (the ``bench`` extra) attached to the server's
process family, and writes an SVG flame graph beside the results:
``<results stem>-profiles/<scenario>-<contender>-w<workers>.svg``; perf samples the same
run below Python (``bench/native.py``: ``<...>.perf.txt``, the shared objects' shares).
That run's figures are kept under ``profiles[].run`` in the JSON (to see what the
profiler cost) and never in a measured point, so a profile cannot distort the numbers
the report compares.

A profile that cannot be taken (py-spy missing, no permission to read the server's
memory, the profiled run failing) is an entry with status "failed" and the reason; the
run goes on and keeps everything it measured.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from bench import native
from pulp_content_asgi.devtools.processes import family

#: The py-spy the ``bench`` extra installs beside this interpreter.
PYSPY = os.path.join(os.path.dirname(sys.executable), "py-spy")

#: The scenarios that get a profile, in the order a run measures them (``bench/plan.py``).
SCENARIOS = ("published", "large", "slow", "burst", "objects", "ondemand")

#: The concurrency level the published and object-storage scenarios are profiled at when
#: the plan measures it (else the plan's highest level).
LEVEL = 64

#: Seconds py-spy may take to attach and say it samples, and to write its file once told
#: to stop (it reads the target's interpreter state first; a busy machine is slow).
ATTACH_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0

#: What py-spy prints once it samples, and when it has written the file.
SAMPLING = "Sampling process"
WROTE = re.compile(r"Samples: (\d+) Errors: (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # py-spy colours its "py-spy>" prefix on a terminal

#: The title of a frame in the SVG: the frame's name, then its samples and share.
TITLE_COUNTS = re.compile(r" \([\d,]+ samples?, [\d.]+%\)$")
#: A process's own box (``--subprocesses``): its self time is samples of a running thread
#: with no Python frame (native code such as granian's threads between calls into Python).
PROCESS = re.compile(r'^process (\d+):".*"$', re.DOTALL)
SVG = "{http://www.w3.org/2000/svg}"
INFERNO = "{http://github.com/jonhoo/inferno}"


class ProfileFailed(Exception):
    """No flame graph: the message says why (shown as "profile: failed: <reason>")."""


def level(concurrency: tuple[int, ...]) -> int:
    """The wrk connection count a published or object-storage profile runs at."""
    return LEVEL if LEVEL in concurrency else max(concurrency)


def folder(stem: str) -> str:
    """The profiles' folder of the results ``<stem>.json``: ``<stem>-profiles``."""
    return stem + "-profiles"


def file_name(scenario: str, contender: str, workers: int) -> str:
    return f"{scenario}-{contender}-w{workers}.svg"


def command(executable: str, pid: int, output: str, cpus: str | None = None) -> list[str]:
    """The py-spy command line that samples ``pid`` and its children into ``output``.

    * ``--subprocesses``: the work happens in the children (granian's worker under our
      command's process, gunicorn's worker under its arbiter); the parents, which mostly
      sleep, add almost nothing.
    * ``--nonblocking``: py-spy reads the interpreter's memory without stopping it. By
      default it stops every thread for each sample (100 a second), which adds a pause to
      every request in flight and changes an event loop's timing, the thing profiled.
      A sample read while the stack changes is counted in "Errors" and dropped.
    * No ``--native``: py-spy refuses it with ``--nonblocking`` (native unwinding needs
      the process stopped), so granian's Rust and C extensions show as the Python frame
      that called them.
    * No ``--idle``: the flame graph shows where CPU is spent (sampled on the wall clock,
      idle threads left out). An event-loop server under load is limited by the CPU its
      loop gets; with ``--idle`` the loop's wait in ``epoll`` and every idle thread of the
      database and file thread pools would fill most of the picture and hide that work.
      Waiting (on PostgreSQL, on an upstream) is measured as latency and TTFB instead.
    * No ``--gil``: a thread holding the GIL is not the only one that costs time.
    * ``--function``: frames are functions (their first line), not each line executed,
      so one function is one box.
    * The default rate (100 a second); pinned to the client's CPUs (``cpus``) when the
      server has its own, so sampling takes no CPU from the server.
    """
    argv = [executable, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
            "--function", "--format", "flamegraph", "--output", output]
    return ["taskset", "-c", cpus, *argv] if cpus else argv


class _Output:
    """py-spy's output, read on a thread: ``settled`` is set once it says it samples or
    once it exits (its output closes), whichever comes first."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.sampling = False
        self.settled = threading.Event()
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        try:
            for line in self._process.stdout:
                self.lines.append(ANSI.sub("", line).rstrip())
                if SAMPLING in line:
                    self.sampling = True
                    self.settled.set()
        finally:
            self.settled.set()

    def wait_started(self, timeout: float) -> None:
        """Return once py-spy samples; ProfileFailed if it exits or takes ``timeout`` s."""
        if not self.settled.wait(timeout) or not self.sampling:
            raise ProfileFailed(self.reason(f"py-spy did not start sampling within "
                                            f"{timeout:g} s"))

    def reason(self, default: str) -> str:
        """py-spy's error message (from the line saying "Error" or "panicked", where a
        panic's backtrace follows it), else its last words, else ``default``."""
        said = [line.removeprefix("py-spy> ") for line in self.lines if line.strip()]
        first = next((i for i, line in enumerate(said)
                      if "Error" in line or "panicked" in line), None)
        words = said[first:first + 2] if first is not None else said[-2:]
        return "; ".join(words)[:300] if words else default

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def record(argv: list[str], output: str, run: Callable[[], dict]) -> dict[str, Any]:
    """Start py-spy (``argv``), call ``run`` once it samples, then stop it (SIGINT: it
    writes ``output``). Returns ``run``'s result, py-spy's sample and error counts and the
    flame graph's top frames; raises ProfileFailed saying why there is no flame graph."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(output)
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
    except OSError as error:  # py-spy (or taskset) not installed
        raise ProfileFailed(f"{argv[0]}: {error.strerror or error} (the bench extra "
                            "installs py-spy: pip install -e '.[bench]')") from error
    said = _Output(process)
    try:
        said.wait_started(ATTACH_TIMEOUT)
        try:
            result = run()
        except Exception as error:  # the profiled run only: the measured ones are saved
            raise ProfileFailed(f"the profiled run failed: {type(error).__name__}: "
                                f"{error}"[:300]) from error
    finally:
        native.interrupt(process, WRITE_TIMEOUT)
        said.join(WRITE_TIMEOUT)
    if process.returncode != 0 or not os.path.isfile(output):
        raise ProfileFailed(said.reason(f"py-spy exited with status {process.returncode} "
                                        "and wrote no flame graph"))
    wrote = [found for line in said.lines if (found := WROTE.search(line))]
    counts = wrote[-1] if wrote else None
    with open(output, encoding="utf-8") as svg:
        try:
            top = top_frames(svg.read())
        except ET.ParseError as error:
            raise ProfileFailed(f"py-spy wrote an unreadable SVG ({error})") from error
    return {"run": result, "samples": int(counts[1]) if counts else None,
            "errors": int(counts[2]) if counts else None, "top": top}




def top_frames(svg: str, count: int = 3) -> list[dict[str, Any]]:
    """The ``count`` functions with the most self samples in a py-spy (inferno) flame
    graph, with their share of all samples: a box's samples (``fg:w``) less those of
    the boxes stacked on it (one row further from the root, within its span)."""
    rows: dict[float, list[tuple[int, int, str]]] = {}
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        title, rect = group.find(f"{SVG}title"), group.find(f"{SVG}rect")
        if title is None or rect is None or rect.get(f"{INFERNO}w") is None:
            continue
        name = PROCESS.sub(r"process \1 (no Python frame)", TITLE_COUNTS.sub("", title.text or ""))
        rows.setdefault(float(rect.get("y", 0)), []).append(
            (int(rect.get(f"{INFERNO}x", 0)), int(rect.get(f"{INFERNO}w", 0)), name))
    if not rows:
        return []
    # The root is the widest box (every sample), named "all" by inferno; a plain chain
    # ties, and then the bottom row is taken (an icicle graph has it at the top).
    total, _, root = max((w, name == "all", y) for y, row in rows.items() for _, w, name in row)
    levels = sorted(rows, key=lambda y: abs(y - root))
    own: dict[str, int] = {}
    for depth, y in enumerate(levels):
        above = rows[levels[depth + 1]] if depth + 1 < len(levels) else []
        for x, w, name in rows[y]:
            covered = sum(cw for cx, cw, _ in above if x <= cx < x + w)
            own[name] = own.get(name, 0) + w - covered
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [{"frame": name, "self_share": samples / total} for name, samples in ranked
            if samples > 0]


def wanted(contender: Any) -> bool:
    """Our app in every variant, and pulpcore-content with the cache off on either event
    loop; not nginx (no Python to sample) nor pulpcore-content's cache variants."""
    from bench import servers

    return isinstance(contender, servers.ContentAsgi) or (
        isinstance(contender, servers.PulpcoreContent) and not contender.cache)


class Profiler:
    """The profiles of one run: on or off, written under :func:`folder` of the results
    ``stem``, each recorded in ``entries`` (the results' ``profiles``) and ``save``d."""

    def __init__(self, enabled: bool, stem: str, entries: list[dict[str, Any]],
                 save: Callable[[], object], executable: str = PYSPY,
                 perf: str = native.PERF) -> None:
        self.enabled, self.stem, self.entries = enabled, stem, entries
        self.save, self.executable, self.perf = save, executable, perf

    def take(self, scenario: str, contender: Any, workers: int, pid: int, cpus: str | None,
             run: Callable[[], dict], **details: Any) -> dict[str, Any] | None:
        """One more run of ``scenario`` (``run``) with py-spy attached to ``pid`` and its
        children; the entry (status "recorded" or "failed" with the reason, ``details``
        added), or None when profiles are off or ``contender`` is not profiled."""
        if not (self.enabled and wanted(contender)):
            return None
        from bench.points import say

        output = os.path.join(folder(self.stem), file_name(scenario, contender.name, workers))
        entry: dict[str, Any] = {"scenario": scenario, "contender": contender.name,
                                 "workers": workers, **details}
        say(f"    profile: one more {scenario} run with py-spy and perf attached")
        below: dict[str, Any] = {}  # what perf found (bench/native.py)

        def sampled() -> dict:
            with native.sampling(family(pid), output.removesuffix(".svg") + ".perf.txt",
                                 below, self.perf, cpus):
                return run()

        try:
            os.makedirs(folder(self.stem), exist_ok=True)
            found = record(command(self.executable, pid, output, cpus), output, sampled)
        except ProfileFailed as failure:
            entry.update(status="failed", error=str(failure))
            say(f"    profile: failed: {failure}")
        except Exception as error:  # any other fault: a profile never ends the caller's
            # measuring, whose runs before it are kept
            entry.update(status="failed", error=f"{type(error).__name__}: {error}"[:500])
            say(f"    profile: {entry['error']}")
        else:
            entry.update(status="recorded", **found,
                         file=os.path.relpath(output, os.path.dirname(self.stem)))
            say(f"    profile: {entry['file']} ({found['samples']} samples)")
        if not below:  # py-spy never sampled, so the run perf would have sampled did not happen
            below["native_error"] = "not sampled: the profiled run did not happen"
        if "native_file" in below:
            below["native_file"] = os.path.relpath(below["native_file"],
                                                   os.path.dirname(self.stem))
        entry.update(below)
        if "native_error" in below:
            say(f"    profile: perf: {below['native_error']}")
        self.entries.append(entry)
        self.save()
        return entry
