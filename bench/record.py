"""Where a run's results go and what they carry: provenance (commit, machine, date), the
JSON rewritten after every measured point, and the markdown and charts written at the end
or when the run is interrupted, so a run that dies keeps what it gathered."""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: Packages whose versions decide the numbers.
PACKAGES = ("pulpcore", "django", "aiohttp", "gunicorn", "uvloop", "granian",
            "uvicorn", "psycopg")


def _output(argv: list[str]) -> str:
    """stdout+stderr of ``argv`` stripped, or "unknown" when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout + done.stderr).strip() or "unknown"


def commit(tree: str = ROOT) -> str:
    """``HEAD``'s id of the checkout at ``tree`` (default: this one), with "+dirty" when
    tracked files differ from it; "unknown" outside a git checkout."""
    head = _output(["git", "-C", tree, "rev-parse", "--short=12", "HEAD"])
    if not all(c in "0123456789abcdef" for c in head):  # git's complaint: not a checkout
        return "unknown"
    dirty = _output(["git", "-C", tree, "status", "--porcelain", "--untracked-files=no"])
    return head + ("+dirty" if dirty not in ("", "unknown") else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was)."""
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = platform.python_version()
    found["nginx"] = _output(["nginx", "-v"]).removeprefix("nginx version: ")
    found["wrk"] = _output(["wrk", "-v"]).splitlines()[0].split(" [")[0].removeprefix("wrk ")
    return found


def kind_of(meta: dict[str, Any]) -> str:
    """"ondemand" (only the on-demand comparison), "smoke" (a tooling check), "quick" or
    "full"."""
    if meta.get("only_ondemand"):
        return "ondemand"
    return "smoke" if meta.get("smoke") else "quick" if meta["quick"] else "full"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Recorder:
    """One results file set, ``<folder>/<UTC start>-<machine>-<kind>.{json,md}`` (+ PNGs).

    ``save()`` rewrites the JSON (atomically) after every point; ``finish(status)`` stamps
    the end and writes everything, whatever state the run is in.
    """

    def __init__(self, folder: str, meta: dict[str, Any]) -> None:
        os.makedirs(folder, exist_ok=True)
        started = datetime.datetime.now(datetime.UTC)
        kind = kind_of(meta)
        machine = socket.gethostname()
        self.stem = os.path.join(folder, f"{started:%Y-%m-%dT%H%MZ}-{machine}-{kind}")
        self.results: dict[str, Any] = {
            "meta": {"started": started.isoformat(timespec="seconds"), "finished": None,
                     "status": "running", "commit": commit(), "machine": machine,
                     "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                     "load_average_start": load_average(), "versions": versions(), **meta},
            "runs": [], "objects": None, "ondemand": None, "hops": None,
            "profiles": []}

    def add_run(self, run: dict[str, Any]) -> dict[str, Any]:
        self.results["runs"].append(run)
        self.save()
        return run

    def save(self) -> str:
        path = self.stem + ".json"
        with open(path + ".tmp", "w") as out:
            json.dump(self.results, out, indent=2)
        os.replace(path + ".tmp", path)
        return path

    def finish(self, status: str) -> list[str]:
        """Stamp ``status`` and the end time, write JSON, markdown and charts."""
        from bench import report

        meta = self.results["meta"]
        meta.update(status=status, finished=now(), load_average_end=load_average())
        written = [self.save()]
        with open(self.stem + ".md", "w") as out:
            out.write(report.markdown(self.results, os.path.basename(self.stem) + ".json"))
        written.append(self.stem + ".md")
        return written + report.charts(self.results, self.stem)
