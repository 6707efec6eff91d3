"""Python allocations of a server process, on request (``bench/slowmem.py --tracemalloc``).

Imported by every interpreter started with this folder on ``PYTHONPATH`` (its thread is
started again in every process forked from one: a server's workers). When
``PYTHONTRACEMALLOC`` is set and ``SLOWMEM_PROBE_DIR`` names a folder, a thread looks
there every 0.2 s for files named ``take-<label>``; for each new one it writes
``<pid>-<label>.txt``: the memory tracemalloc traces now and its peak (bytes),
then the 30 source lines whose allocations grew most since the previous label (or the
largest, for the first). Development measurement only; never installed.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

_DIR = os.environ.get("SLOWMEM_PROBE_DIR")


def _report(label: str, base: tracemalloc.Snapshot | None) -> tracemalloc.Snapshot:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced {current} peak {peak}"]
    stats = (snapshot.compare_to(base, "lineno") if base is not None
             else snapshot.statistics("lineno"))
    lines += [str(stat) for stat in stats[:30]]
    path = os.path.join(str(_DIR), f"{os.getpid()}-{label}.txt")
    with open(path + ".part", "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(path + ".part", path)
    return snapshot


def _watch() -> None:
    seen: set[str] = set()
    base: tracemalloc.Snapshot | None = None
    while True:
        time.sleep(0.2)
        for name in sorted(os.listdir(str(_DIR))):
            if name.startswith("take-") and name not in seen:
                seen.add(name)
                base = _report(name[len("take-"):], base)


def _start() -> None:
    threading.Thread(target=_watch, name="slowmem-probe", daemon=True).start()


if _DIR and tracemalloc.is_tracing() and os.path.isdir(_DIR):
    _start()
    # Workers forked from the server (granian, gunicorn) have no copy of the thread.
    os.register_at_fork(after_in_child=_start)
