"""Where a server's CPU goes below Python (issue #18): perf's samples by shared object.

py-spy's flame graphs (``bench/profiles.py``) see Python frames only: native work shows
as the Python frame that called it, or as a process's own box. The on-demand row is
decided in native code (libcrypto's digests, the kernel's socket and file work), so the
profiled run of each scenario also has ``perf record`` sampling the server's processes:
every thread, user and kernel time, :data:`RATE` times a second, no call graphs (self
time per shared object is the question; unwinding through CPython without frame
pointers would not be reliable anyway). The report lists the shared objects with the
most samples (``libcrypto.so.3 57 %``, ``[kernel.kallsyms] 28 %``); the whole
``perf report --sort dso -n`` is kept beside the flame graph as ``<name>.perf.txt``.

perf missing (Debian: ``linux-perf``, which ``make bench`` installs) or refused
(``kernel.perf_event_paranoid``, no permission for the server's processes) leaves the
reason in the profile's entry, as a failed flame graph does; the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

#: The perf on PATH (``linux-perf`` on Debian).
PERF = shutil.which("perf") or "perf"
#: Samples per second of CPU time of each sampled thread: prime, so sampling does not
#: beat with periodic work.
RATE = 499
#: Seconds perf may take to attach (to write its file's header), and to write it out
#: once told to stop.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
#: Shared objects listed in the report, and the least share listed.
TOP = 4
LEAST = 0.005

#: A line of ``perf report --stdio --sort dso -n``: share, samples, shared object.
LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\d+)\s+(\S.*?)\s*$")
#: The header line naming the event sampled: ``cpu-clock:ppp`` (user and kernel) or
#: ``cpu-clock:uhppp`` (user only).
EVENT = re.compile(r"^# Samples: .* of event '[^':]*:([a-zA-Z]*)'")


def command(perf: str, pids: list[int], output: str, cpus: str | None = None) -> list[str]:
    """The ``perf record`` command line sampling every thread of ``pids`` (and the threads
    and processes they start: perf's events are inherited) into ``output`` until it is
    interrupted; pinned to ``cpus`` (the client's) when the server has CPUs of its own,
    as py-spy is."""
    argv = [perf, "record", "-F", str(RATE), "-p", ",".join(map(str, pids)), "-o", output]
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def shares(text: str, top: int = TOP) -> dict[str, Any]:
    """``perf report --stdio --sort dso -n`` read: ``{"samples": n, "kernel": bool,
    "top": [{"dso": name, "share": 0..1}, ...]}``: the ``top`` largest first, none under
    :data:`LEAST`; the rows' counts summed (the header abbreviates them past 1,000,
    "2K"); ``kernel`` False when perf sampled user time only (an event ending ``:u…``,
    what perf falls back to for a user without the permission)."""
    rows: list[tuple[float, int, str]] = []
    kernel = True
    for line in text.splitlines():
        if (event := EVENT.match(line)) is not None:
            kernel = not event[1].startswith("u")
        elif not line.startswith("#") and (row := LINE.match(line)) is not None:
            rows.append((float(row[1]) / 100, int(row[2]), row[3]))
    rows.sort(key=lambda row: -row[0])
    return {"samples": sum(count for _, count, _ in rows), "kernel": kernel,
            "top": [{"dso": dso, "share": round(share, 4)}
                    for share, _, dso in rows[:top] if share >= LEAST]}


def _started(process: subprocess.Popen[bytes], output: str) -> bool:
    """Wait (polling perf's file, which it writes a header to once attached) until perf
    samples or exits; True once it samples."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            if os.path.getsize(output) > 0:
                return True
        time.sleep(0.05)
    return False


def interrupt(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGINT (a profiler's Ctrl-C, perf's and py-spy's alike: stop sampling, write the
    file), SIGKILL to its whole session (started with ``start_new_session``) if it has
    not exited ``timeout`` seconds later."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.kill()
            process.wait()


def _said(process: subprocess.Popen[bytes], default: str) -> str:
    """What perf said on stderr (read once it has exited, closing the pipe): the line
    after its "Error:" and the next, else its first two lines, else ``default``."""
    try:
        _, err = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # something else holds perf's stderr open
        return default
    lines = [line.strip() for line in err.decode(errors="replace").splitlines()
             if line.strip() and not line.startswith("[ perf record")]
    if "Error:" in lines:
        lines = lines[lines.index("Error:") + 1:]
    return "; ".join(lines[:2])[:300] if lines else default


@contextlib.contextmanager
def sampling(pids: list[int], text: str, found: dict[str, Any], perf: str = PERF,
             cpus: str | None = None) -> Iterator[None]:
    """Sample ``pids`` with perf while the body runs; then write the report to ``text``
    and fill ``found``: ``native`` (:func:`shares`) and ``native_file``, or
    ``native_error`` (why there is none). Never raises for perf's sake: the body runs
    whether perf could sample or not, and a report perf cannot make is an error noted."""
    data = text + ".data"
    with contextlib.suppress(FileNotFoundError):
        os.remove(data)
    if shutil.which(perf) is None:
        found["native_error"] = (f"{perf}: not found (Debian: apt-get install linux-perf; "
                                 "make bench installs it)")
        yield
        return
    process = subprocess.Popen(command(perf, pids, data, cpus), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        if not _started(process, data):
            interrupt(process)
            found["native_error"] = _said(process, (
                f"perf exited with status {process.returncode}" if process.returncode
                else f"perf did not start sampling within {START_TIMEOUT:g} s"))
            yield
            return
        try:
            yield
        finally:
            interrupt(process)
            _said(process, "")  # closes its stderr
        try:
            report = subprocess.run([perf, "report", "-i", data, "--stdio", "--sort", "dso",
                                     "-n"], capture_output=True, text=True,
                                    timeout=STOP_TIMEOUT)
            if report.returncode != 0 or not report.stdout.strip():
                found["native_error"] = (report.stderr.strip().splitlines() or
                                         [f"perf report exited with {report.returncode}"])[-1]
                return
            with open(text, "w", encoding="utf-8") as out:
                out.write(report.stdout)
        except (OSError, subprocess.TimeoutExpired) as error:
            found["native_error"] = f"perf report: {error}"[:300]
            return
        found["native"] = shares(report.stdout)
        found["native_file"] = text
    finally:
        if process.poll() is None:
            interrupt(process)
        with contextlib.suppress(FileNotFoundError):
            os.remove(data)
