"""perf's view below Python in the bench's profiles (bench/native.py): its report read
into shares by shared object, one real recording of a process that hashes, and perf
missing recorded as the reason while the profiled run goes on. No server, no database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import native

pytestmark = pytest.mark.fast

needs_perf = pytest.mark.skipif(shutil.which("perf") is None,
                                reason="perf not installed: make test installs it (Debian "
                                       "linux-perf, dev/test-tools.sh); plain pytest does not")

#: ``perf report --stdio --sort dso -n`` of a worker during a cold on-demand GiB
#: (abridged; the header abbreviates counts past 1,000).
REPORT = """\
# Total Lost Samples: 0
#
# Samples: 2K of event 'cpu-clock:ppp'
# Event count (approx.): 5340000000
#
# Overhead       Samples  Shared Object
# ........  ............  .........................
#
    28.50%           760  [kernel.kallsyms]
    57.00%          1519  libcrypto.so.3
     9.50%           253  python3.11
     3.00%            80  libc.so.6
     0.30%             8  _granian.cpython-311-x86_64-linux-gnu.so
#
# (Tip: Boolean options have negative forms, e.g.: perf report --no-children)
#
"""


def test_the_report_is_read_into_shares_by_shared_object_largest_first() -> None:
    assert native.shares(REPORT) == {"samples": 2620, "kernel": True, "top": [
        {"dso": "libcrypto.so.3", "share": 0.57},
        {"dso": "[kernel.kallsyms]", "share": 0.285},
        {"dso": "python3.11", "share": 0.095},
        {"dso": "libc.so.6", "share": 0.03}]}
    assert native.shares(REPORT, top=6)["top"][-1] == {"dso": "libc.so.6", "share": 0.03}
    assert native.shares("") == {"samples": 0, "kernel": True, "top": []}


def test_a_report_of_user_time_only_says_so() -> None:
    """perf falls back to user time for a user without the permission (the event
    ``cpu-clock:uhppp``): the kernel's share is then missing, not zero."""
    user_only = REPORT.replace("cpu-clock:ppp", "cpu-clock:uhppp")
    assert native.shares(user_only)["kernel"] is False


def test_perf_samples_every_thread_of_the_processes_until_interrupted() -> None:
    assert native.command("perf", [10, 11], "/x/p.data") == [
        "perf", "record", "-F", "499", "-p", "10,11", "-o", "/x/p.data"]
    assert native.command("perf", [10], "/x/p.data", "1")[:3] == ["taskset", "-c", "1"]


HASH = """
import hashlib, sys
block = bytes(1 << 20)
sys.stdin.readline()  # idle until perf samples
for _ in range(400):
    hashlib.sha512(block).digest()
"""


@needs_perf
def test_a_process_that_hashes_is_seen_in_libcrypto(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", HASH], stdin=subprocess.PIPE, text=True)
    found: dict = {}
    text = str(tmp_path / "ondemand-asgi-granian-w1.perf.txt")
    try:
        with native.sampling([child.pid], text, found):
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
            assert child.wait(120) == 0
    finally:
        child.kill()
        child.wait()
    assert "native_error" not in found, found
    assert found["native_file"] == text and os.path.isfile(text)
    assert not os.path.exists(text + ".data")  # perf's binary file is not kept
    top = found["native"]["top"]
    assert top[0]["dso"].startswith("libcrypto") and top[0]["share"] > 0.5, top
    assert found["native"]["samples"] > 0


def test_no_perf_is_the_reason_and_the_run_still_happens(tmp_path: Path) -> None:
    found: dict = {}
    ran = []
    with native.sampling([os.getpid()], str(tmp_path / "x.perf.txt"), found,
                         perf=str(tmp_path / "no-perf-here")):
        ran.append(True)
    assert ran == [True]
    assert "native" not in found and "linux-perf" in found["native_error"]
    assert "no-perf-here: not found" in found["native_error"]


@needs_perf
def test_perf_refusing_a_process_is_the_reason_said_at_once(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    found: dict = {}
    ran = []
    with native.sampling([gone.pid], str(tmp_path / "x.perf.txt"), found):
        ran.append(True)
    assert ran == [True] and "native" not in found
    assert "did not start sampling" not in found["native_error"], found  # not a timeout
    assert not os.path.exists(tmp_path / "x.perf.txt.data")
