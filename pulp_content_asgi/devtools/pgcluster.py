"""A private PostgreSQL cluster that a test owns and can really stop and start.

Made with Debian's server binaries (``/usr/lib/postgresql/<version>/bin``) under a fresh
folder in /tmp, listening on a free loopback port with trust authentication. As root the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

from pulp_content_asgi.devtools.processes import free_port

#: The newest installed server's binaries, or None (dev/database.sh installs them).
BINDIR = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)


class Cluster:
    """``init`` → ``start``/``stop`` (any number of times) → ``remove``.

    ``options`` are extra server settings (``-c name=value`` pairs) such as
    ``("log_statement=all",)``; the server log is :attr:`log_path`.
    """

    def __init__(self, options: Sequence[str] = ()) -> None:
        if BINDIR is None:
            raise RuntimeError("PostgreSQL's server binaries are missing: dev/database.sh "
                               "installs them")
        self.root = tempfile.mkdtemp(prefix="pg-private-", dir="/tmp")
        self.data = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "log")
        self.port = free_port()
        self.options = tuple(options)

    def _run(self, *argv: str) -> None:
        command = " ".join(argv)
        if os.getuid() == 0:
            subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True,
                           capture_output=True)
        else:
            subprocess.run(command, shell=True, check=True, capture_output=True)

    def init(self) -> None:
        os.makedirs(self.data)
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
        self._run(f"{BINDIR}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust")

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        extra = "".join(f" -c {option}" for option in self.options)
        self._run(f"{BINDIR}/pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-o",
                  f"'-p {self.port} -k /tmp -c listen_addresses=127.0.0.1{extra}'", "start")

    def stop(self) -> None:
        """Stop it (fast shutdown: sessions are ended) and wait until it is down."""
        self._run(f"{BINDIR}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """Crash it (``immediate`` shutdown: every process quits at once, no checkpoint;
        the next start replays the WAL, as after a power cut) and wait until it is down."""
        self._run(f"{BINDIR}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """``PG*`` variables pointing at this cluster."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": "postgres"}
