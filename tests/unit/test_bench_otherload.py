"""bench/otherload.py counts the CPU of processes that are not the bench's: a process of
the bench's family is left out, a process outside it (an orphan, as another session's job
would be) is counted, and the report names the points measured beside other work.
Real processes, no database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import otherload, report

pytestmark = pytest.mark.fast

#: A process that waits for ``go``, burns ``cpu`` seconds of its own CPU time, writes
#: ``done`` and sleeps until killed (so it is alive when the window closes).
BURNER = """
import os, sys, time
go, done, cpu = sys.argv[1], sys.argv[2], float(sys.argv[3])
while not os.path.exists(go):
    time.sleep(0.01)
while time.process_time() < cpu:
    pass
open(done, "w").close()
time.sleep(600)
"""


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _orphan(tmp_path: Path, cpu: float) -> int:
    """The PID of a burner that is not this process's descendant (double fork: its
    parent exits, so it is reparented outside the bench's family)."""
    pid_file = tmp_path / "pid"
    launcher = subprocess.run(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], "
         "*sys.argv[2:5]], start_new_session=True); open(sys.argv[5], 'w').write(str(p.pid))",
         BURNER, str(tmp_path / "go"), str(tmp_path / "done"), str(cpu), str(pid_file)],
        check=True, timeout=60)
    assert launcher.returncode == 0
    return int(pid_file.read_text())


def test_a_process_outside_the_bench_is_counted_and_one_inside_is_not(tmp_path: Path) -> None:
    pid = _orphan(tmp_path, 0.4)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        found = otherload.ticks(excluded=())
        assert pid in found, "an orphan outside the bench's family is counted"
        assert child.pid not in found, "the bench's own child is not"
        assert os.getpid() not in found
        assert pid not in otherload.ticks(excluded={pid})
    finally:
        child.kill()
        child.wait()
        os.kill(pid, 9)


def test_the_cpu_an_outside_process_spends_in_the_window_is_the_figure(tmp_path: Path) -> None:
    pid = _orphan(tmp_path, 0.4)
    try:
        with otherload.OtherLoad() as other:
            (tmp_path / "go").touch()
            _wait_for(tmp_path / "done", "the burner never finished")
    finally:
        os.kill(pid, 9)
    assert other.other_cores is not None
    # At least the burner's 0.4 CPU-s (less the ticks it had before the window: a
    # fraction of the interpreter's start-up); others on a busy machine only add to it.
    spent = other.other_cores * other.wall
    assert spent >= 0.3, f"{spent:.2f} CPU-s counted of the burner's 0.4"


def _results(other: list[float | None]) -> dict[str, Any]:
    runs = [{"rps": 100.0, "other_cores": v} for v in other]
    return {"runs": [{"contender": "asgi-granian", "workers": 1, "small": {"64": runs},
                      "large": [], "slow": [], "burst": []}],
            "objects": None, "ondemand": {"hashing": {"runs": [{"gbps": 1.0,
                                                                 "other_cores": 0.0}]}},
            "held": None}


def test_the_report_names_points_measured_beside_other_work() -> None:
    text = " ".join(report.other_work(_results([0.0, 0.9, 0.1])))
    assert "1 of 2 points ran beside" in text
    assert "asgi-granian 1w published c64 (max 0.90)" in text


def test_the_report_says_when_no_point_was_loaded() -> None:
    text = " ".join(report.other_work(_results([0.0, 0.1, 0.2])))
    assert "No point ran beside" in text and "4 of 4 runs recorded it" in text


def test_older_results_say_the_figure_was_not_recorded() -> None:
    results = _results([None, None])
    results["ondemand"] = None
    assert "not recorded" in " ".join(report.other_work(results))


#: A burner that first listens on a TCP port of loopback and writes the port to ``port``
#: (a server the bench uses but did not start, as the system's Redis is).
LISTENER = """
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
open(sys.argv[4], "w").write(str(server.getsockname()[1]))
sys.argv = sys.argv[:4]
""" + BURNER


def test_a_server_the_bench_uses_is_found_by_its_port_and_not_counted(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    launcher = subprocess.run(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], "
         "*sys.argv[2:6]], start_new_session=True); open(sys.argv[6], 'w').write(str(p.pid))",
         LISTENER, str(tmp_path / "go"), str(tmp_path / "done"), "0.4", str(port_file),
         str(tmp_path / "pid")], check=True, timeout=60)
    assert launcher.returncode == 0
    pid = int((tmp_path / "pid").read_text())
    try:
        _wait_for(port_file, "the listener never wrote its port")
        port = int(port_file.read_text())
        assert otherload.listeners(port) == {pid}
        assert otherload.listeners(None) == set()
        # The same window seen twice: once counting everything, once with the port's
        # server as the bench's own; the burner's CPU is the difference.
        with otherload.OtherLoad() as everything, \
                otherload.OtherLoad(ports=[port]) as without_server:
            (tmp_path / "go").touch()
            _wait_for(tmp_path / "done", "the burner never finished")
    finally:
        os.kill(pid, 9)
    assert everything.other_cores is not None and without_server.other_cores is not None
    difference = (everything.other_cores * everything.wall
                  - without_server.other_cores * without_server.wall)
    assert difference >= 0.3, f"{difference:.2f} CPU-s left out of the server's 0.4"
