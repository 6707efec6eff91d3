"""What the adversarial tests share (issue #17, "input nobody should trust"): a raw HTTP
client that sends requests byte for byte and reads answers strictly, the judge that checks
every answer (no 5xx, no byte too many, every 206 exactly the bytes its ``Content-Range``
names, no guarded byte without credentials), the tallies, and ``reliability/report.md``.

Only the standard library is imported at module level (the fast tier imports the tallies).

Sizes of the Hypothesis runs: ``HYPOTHESIS_PROFILE=ci`` (the default; derandomized, the
bounded slice ``make test`` runs) or ``adversarial`` (``make adversarial``: random, seeded
with ``--hypothesis-seed``, :data:`SCALE` times the examples).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
#: How many times more examples the ``adversarial`` profile tries than ``ci``.
SCALE = int(os.environ.get("ADVERSARIAL_SCALE", "25")) if PROFILE == "adversarial" else 1
#: A server that answers nothing for this long is hung (a failure, not a refusal).
HANG_SECONDS = 60.0
#: Password hashers of the servers these tests start: MD5 first, so an RBAC guard's
#: failed Basic logins (Django hashes the offered password even for unknown users) cost
#: microseconds instead of PBKDF2's second of CPU each; PBKDF2 stays for other users.
FAST_HASHERS = {"PULP_PASSWORD_HASHERS": '["django.contrib.auth.hashers.MD5PasswordHasher",'
                                         ' "django.contrib.auth.hashers.PBKDF2PasswordHasher"]'}


def examples(count: int) -> int:
    """``count`` Hypothesis examples in the ci profile, :data:`SCALE` times as many in the
    adversarial one."""
    return count * SCALE


def md5_password(password: str) -> str:
    """A stored password the :data:`FAST_HASHERS` servers check with MD5 (test users only)."""
    import hashlib

    salt = "adversarial"
    return f"md5${salt}${hashlib.md5((salt + password).encode()).hexdigest()}"


# --- tallies and the report ------------------------------------------------------------

SECTIONS = {
    "targets": "Request targets (raw bytes: every byte, percent-encodings, dot segments, "
               "`//`, overlong, non-UTF-8)",
    "headers": "Headers (Range, If-*, Cookie, Authorization, X-CLIENT-CERT, Host, "
               "non-ASCII bytes)",
    "storage": "Object storage (S3 on moto, proxied and redirected, with domains)",
    "guards": "Guard-bypass corpus (RBAC, header, env-var header, redirect token, composite, "
              "X.509, RHSM; nesting; domain swaps)",
    "matching": "Distribution matching over arbitrary base paths (no server)",
    "listing": "Listing links and markup over arbitrary names (no server)",
    "rolling": "Rolling upgrade (the old release, pulpcore-content and this checkout behind "
               "nginx on one database and Redis, switched one process at a time under load)",
    "faults": "Faults (PostgreSQL stopped and killed, Redis killed, a full disk, two hosts, "
              "a port in use)",
}

#: The fault tests of issue #17, by module: each runs its own PostgreSQL cluster, Redis,
#: tmpfs or servers, so they run in a lane beside the others (tests/adversarial_lanes.py).
FAULT_MODULES = ("test_db_outage_e2e", "test_ondemand_saves_e2e", "test_ondemand_disk_full_e2e",
                 "test_ondemand_hosts_e2e", "test_port_in_use_e2e", "test_rolling_spool_e2e",
                 "test_hostile_wire_e2e", "test_redis_outage_is_invisible")


@dataclass
class Tally:
    """What one section tried and saw."""

    counts: Counter = field(default_factory=Counter)
    #: Distinct failures (a description each), for the report.
    failures: set[str] = field(default_factory=set)

    def fail(self, what: str) -> None:
        self.failures.add(what[:300])


TALLIES: dict[str, Tally] = {name: Tally() for name in SECTIONS}
#: Client-abort storms (tests/test_abort_storm_e2e.py), by server: what was cut where,
#: the worker's figures idle, at their peak and after, and how long settling took.
STORMS: dict[str, dict] = {}
#: Slow and many clients (tests/test_slow_clients_e2e.py), by server: the probe's
#: latencies, RSS, what the slowloris connections saw.
SLOW: dict[str, dict] = {}


def record_storm(server: str, figures: dict) -> None:
    STORMS[server] = figures


def record_slow(server: str, figures: dict) -> None:
    SLOW[server] = figures


#: Fault tests' figures (recovery seconds, answers while down), by what was measured.
FAULTS: dict[str, str] = {}


def record_fault(what: str, figures: str) -> None:
    """One line of figures for the report's faults table (nothing asserts on them)."""
    FAULTS[what] = figures
#: pytest outcomes of the adversarial tests: node id -> "passed" / "failed" / "skipped".
OUTCOMES: dict[str, str] = {}
#: Seconds each adversarial test took (set-up, call and tear-down), by node id.
DURATIONS: dict[str, float] = {}


def results() -> dict:
    """This session's outcomes, durations and figures as JSON-able data: a lane of
    ``make adversarial`` hands them to the runner (tests/adversarial_lanes.py)."""
    return {"outcomes": OUTCOMES, "durations": DURATIONS,
            "tallies": {name: {"counts": dict(t.counts), "failures": sorted(t.failures)}
                        for name, t in TALLIES.items()},
            "storms": STORMS, "slow": SLOW, "faults": FAULTS}


def absorb(found: dict) -> None:
    """Add a lane's :func:`results` to this process's (tallies are summed)."""
    OUTCOMES.update(found["outcomes"])
    DURATIONS.update(found["durations"])
    for name, tally in found["tallies"].items():
        TALLIES[name].counts.update(tally["counts"])
        TALLIES[name].failures.update(tally["failures"])
    STORMS.update(found["storms"])
    SLOW.update(found["slow"])
    FAULTS.update(found.get("faults", {}))


def section_of(nodeid: str) -> str | None:
    """The report section of a test (by its module and name)."""
    for name, module in (("guards", "test_guard_bypass"), ("matching", "test_matching"),
                         ("listing", "test_listing"), ("rolling", "test_rolling_upgrade")):
        if module in nodeid:
            return name
    if any(module in nodeid for module in FAULT_MODULES):
        return "faults"
    if "test_fuzz_e2e" not in nodeid:
        return None
    if "storage" in nodeid:
        return "storage"
    return "headers" if "header" in nodeid or "range" in nodeid else "targets"


def _commit(report: str | None = None) -> str:
    """HEAD, marked when tracked files differ from it; the report being rewritten (the
    previous run's, left uncommitted) is not a change to what ran."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exclude = [] if report is None else [f":!{os.path.relpath(os.path.abspath(report), root)}"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *exclude],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def write_report(path: str, seconds: float, seed: str | None,
                 lanes: list[str] | None = None,
                 profile: tuple[str, int] | None = None,
                 problems: list[str] | None = None) -> None:
    """``reliability/report.md``: per section, requests tried, 5xx seen, bytes leaked;
    ``seconds`` of wall time; ``lanes``: a line per pytest process that ran side by side;
    ``profile``: the Hypothesis profile and scale the tests ran with (this process's when
    None; the lanes' own when they ran in other processes); ``problems``: what went wrong
    with the run itself (a lane that crashed, selected nothing or wrote no results),
    listed first under Failures."""
    name, scale = profile or (PROFILE, SCALE)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Adversarial run: input nobody should trust",
        "",
        "Generated by `make adversarial` (reliability/README.md); do not edit.",
        "",
        f"- Commit: `{_commit(path)}`",
        f"- Date: {now}; {seconds / 60:.1f} minutes",
        f"- Hypothesis profile: `{name}` ({scale} times the CI slice's examples)"
        + (f", seed `{seed}`" if seed else ""),
        *(["- Run as pytest processes side by side: " + "; ".join(lanes)] if lanes else []),
        "",
        "| Section | Tests passed | Requests tried | No answer (server refused) | 5xx seen |"
        " Bytes leaked | 200 bodies checked | 206 ranges checked | Cases (no server) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, title in SECTIONS.items():
        tally = TALLIES[name]
        c = tally.counts
        tests = [o for n, o in OUTCOMES.items() if section_of(n) == name]
        passed = f"{tests.count('passed')}/{len(tests)}"
        lines.append(f"| {title} | {passed} | {c['requests']} | {c['no_answer']} | "
                     f"{c['5xx']} | {c['leaked_bytes']} | {c['checked_200']} | "
                     f"{c['checked_206']} | {c['cases']} |")
    rolling = TALLIES["rolling"].counts
    if rolling["requests"]:
        lines += ["", f"Rolling upgrade: {rolling['held']} downloads held in flight on a "
                      "process while it was told to stop (SIGTERM), each checked whole; "
                      f"{rolling['cache_bypassed']} cross-version cache reads served without "
                      "the cache while the reader's Redis calls failed (its log), each read "
                      "again until the reader asked its cache (one that was then not a HIT "
                      "is listed under Failures)."]
    failed = [(n, o) for n, o in OUTCOMES.items() if o == "failed"]
    lines += ["", "## Failures", ""]
    lines += [f"- the run: {problem}" for problem in problems or []]
    if not problems and not failed and not any(t.failures for t in TALLIES.values()):
        lines.append("None.")
    for nodeid, _ in failed:
        lines.append(f"- test failed: `{nodeid}`")
    for name, tally in TALLIES.items():
        for failure in sorted(tally.failures)[:20]:
            lines.append(f"- {name}: {failure}")
    lines += _storm_lines() + _slow_lines() + _fault_lines() + _duration_lines()
    lines += ["", "## Status codes seen", ""]
    for name, tally in TALLIES.items():
        statuses = sorted((k, v) for k, v in tally.counts.items() if k.startswith("status "))
        if statuses:
            lines.append(f"- {name}: " + ", ".join(f"{k[7:]}: {v}" for k, v in statuses))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as report:
        report.write("\n".join(lines) + "\n")


def _duration_lines(count: int = 15) -> list[str]:
    """The longest tests (pytest's own per-test times: set-up, call and tear-down)."""
    if not DURATIONS:
        return []
    longest = sorted(DURATIONS.items(), key=lambda item: -item[1])[:count]
    return ["", "## Where the time went", "",
            f"The {len(longest)} longest of {len(DURATIONS)} tests (set-up, call and "
            "tear-down; lanes run side by side, so they share the CPU).", "",
            "| Seconds | Test |", "|---|---|",
            *(f"| {seconds:.0f} | `{nodeid}` |" for nodeid, seconds in longest)]


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.0f} MiB"


def _storm_lines() -> list[str]:
    """The abort storms' table: per server, requests and cuts, and each figure of the
    worker idle (before), at its peak during the storm and after settling."""
    if not STORMS:
        return []
    lines = ["", "## Client-abort storm", "",
             "One worker, domains and the response cache on; published, on-demand, "
             "streamed, held (upstream gated) and S3-proxied files; 32 clients at a time "
             "(tests/test_abort_storm_e2e.py). Figures: idle → peak during the storm → "
             "after (once the gates opened and the worker settled).", "",
             "| Server | Requests | Cuts | Status codes read | Failures | fds | threads |"
             " asyncio tasks | WORKING_DIRECTORY files | PostgreSQL backends | Peak RSS |"
             " Back to idle | On-demand problems | Served whole after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for server, f in sorted(STORMS.items()):
        cuts = ", ".join(f"{k} {v}" for k, v in sorted(f["cuts"].items()))
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(f["statuses"].items()))
        figures = [f"{f['idle'][n]} → {f['peak'].get(n, '?')} → {f['after'][n]}"
                   for n in ("fds", "threads", "tasks", "working_files", "pg_backends")]
        back = (f"yes, {f['settle_seconds']:.0f} s" if f["settled"]
                else f"NO ({f['settle_seconds']:.0f} s)")
        served = ", ".join(f"{k} {v}" for k, v in sorted(f["served_after"].items()))
        lines.append(f"| {server} | {f['requests']} | {cuts} | {statuses} | {f['failures']} | "
                     + " | ".join(figures) + f" | {_mib(f['peak'].get('rss', 0))} | {back} | "
                     f"{f['on_demand_problems']} | {served} |")
    return lines


def _fault_lines() -> list[str]:
    """The fault tests: each test's outcome, and the figures the tests recorded."""
    tests = sorted((n, o) for n, o in OUTCOMES.items() if section_of(n) == "faults")
    if not tests:
        return []
    lines = ["", "## Faults", "",
             "Each test owns what it breaks: a private PostgreSQL cluster stopped or killed "
             "(also between a save's `COMMIT` and its acknowledgement), a private Redis killed, "
             "a 16 MiB tmpfs as `WORKING_DIRECTORY` or `MEDIA_ROOT`, two app instances with "
             "their own working directories, a port already taken. Each checks what clients "
             "saw (statuses, bytes, `Retry-After`) and what was saved (rows, files). The "
             "requests counted above are the outage under load's; their 503s, answered while "
             "PostgreSQL was down, are what the test requires, so they are under \"Status "
             "codes seen\", not \"5xx seen\".", "",
             "| Test | Outcome |", "|---|---|",
             *(f"| `{nodeid.split('::', 1)[1]}` ({nodeid.split('::')[0].split('/')[-1]}) "
               f"| {outcome} |" for nodeid, outcome in tests)]
    if FAULTS:
        lines += ["", "| Measured | Figures |", "|---|---|",
                  *(f"| {what} | {figures} |" for what, figures in sorted(FAULTS.items()))]
    return lines


def _slow_lines() -> list[str]:
    if not SLOW:
        return []
    lines = ["", "## Slow and many clients", "",
             "One worker; slow readers hold large downloads, slowloris connections trickle "
             "request headers a byte at a time and never finish them; a probe requests a "
             "small published file, one request after another (tests/test_slow_clients_e2e.py). "
             "Times are measured, not asserted.", "",
             "| Server | Slow readers | Slowloris | Probe requests (ok) | Probe p50 | "
             "Probe p99 | Probe max | RSS idle → peak | Slowloris cut by the server | "
             "Seconds to the first cut |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for server, f in sorted(SLOW.items()):
        lines.append(
            f"| {server} | {f['readers']} | {f['slowloris']} | {f['probes']} "
            f"({f['probes_ok']}) | {f['p50'] * 1000:.1f} ms | {f['p99'] * 1000:.1f} ms | "
            f"{f['max'] * 1000:.0f} ms | {_mib(f['rss_idle'])} → {_mib(f['rss_peak'])} | "
            f"{f['loris_cut']} | {f['first_cut']} |")
    return lines


# --- the response cache across versions (tests/test_rolling_upgrade_e2e.py) --------------

#: What this app logs (``cache/store.py``, the same in the old release) when a Redis call
#: fails: the cache is then off for that process for ``CONTENT_ASGI_CACHE_RETRY`` seconds.
REDIS_FAILED = "Redis unavailable ("


def _log_time(stamp: str) -> float | None:
    """Seconds since the epoch of a JSON log line's ``time`` (``...T12:34:56.789Z``)."""
    try:
        moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def cache_bypass_explained(log: str, sent: float, answered: float, retry_after: float,
                           correlation_id: str) -> str | None:
    """Why a request answered without ``X-PULP-CACHE`` (the cache not used at all) was
    served without the cache, from its server's JSON log (``CONTENT_ASGI_LOG_FORMAT =
    "json"``): a Redis failure logged by the request itself (its ``correlation_id``), or
    logged by another request while this one was sent and answered, or at most
    ``retry_after`` seconds before it was sent (the cache stays off that long). ``sent``
    and ``answered`` are seconds since the epoch. None: nothing in the log explains it
    (a MISS is never explained this way: the cache was asked and had no usable entry)."""
    import json

    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not str(record.get("message", "")).startswith(
                REDIS_FAILED):
            continue
        if record.get("correlation_id") == correlation_id:
            return f"its own Redis call failed: {record['message'][:160]}"
        logged = _log_time(record.get("time"))
        # The log's time is truncated to the millisecond.
        if logged is not None and sent - retry_after - 0.001 <= logged <= answered:
            return (f"a Redis failure logged {logged - sent:+.1f} s after it was sent "
                    f"(the cache is off for {retry_after:g} s after one): "
                    f"{record['message'][:160]}")
    return None



def read_cached(ask: Callable[[dict[str, str]], Any], right: Callable[[Any], bool],
                reader_log: Callable[[], str] | None, retry_after: float,
                deadline: float, interval: float = 0.5) -> tuple[str | None, str | None]:
    """One read of another version's response-cache entry, judged (the rolling upgrade's
    cross-version check). ``ask(headers)`` sends the read and returns an httpx-like answer
    (``headers``, ``status_code``, ``content``); ``right(answer)`` judges its status and
    bytes; ``reader_log()`` is the reader's JSON log (None: a reader whose log says nothing
    about Redis, pulpcore-content, so nothing is excused).

    Returns (problem, note), each None or a sentence. A ``HIT`` with the right answer is
    the claim. A wrong answer, or a ``MISS`` (the cache was asked and did not use the
    entry: another key, or an entry it cannot read), is a problem. An answer without
    ``X-PULP-CACHE`` (served without the cache) passes, with a note, only when the reader's
    log shows a Redis failure that put its cache off for this very request
    (:func:`cache_bypass_explained`) and the same read, repeated every ``interval`` seconds
    until the reader asks its cache again (at most ``deadline`` seconds), is then a right
    ``HIT``."""
    import uuid

    correlation = uuid.uuid4().hex
    sent = time.time()
    answer = ask({"Correlation-ID": correlation})
    answered = time.time()
    cache = answer.headers.get("x-pulp-cache")
    seen = f"{answer.status_code} {cache} {len(answer.content)} bytes"
    if not right(answer) or cache == "MISS":
        return seen, None
    if cache == "HIT":
        return None, None
    why = None if reader_log is None else cache_bypass_explained(
        reader_log(), sent, answered, retry_after, correlation)
    if why is None:
        return f"{seen}, served without the cache and no Redis failure in its log", None
    from tests.helpers import wait_for

    again: list[Any] = []

    def asked_its_cache() -> bool:
        again.append(ask({}))
        return not right(again[-1]) or again[-1].headers.get("x-pulp-cache") is not None

    wait_for(asked_its_cache, deadline, interval=interval)
    last = again[-1]
    if last.headers.get("x-pulp-cache") != "HIT" or not right(last):
        return (f"{seen} without the cache ({why}); read again: {last.status_code} "
                f"{last.headers.get('x-pulp-cache')} {len(last.content)} bytes"), None
    return None, f"served without the cache ({why}); read again {len(again)} times: HIT"

# --- a raw HTTP client -------------------------------------------------------------------

class Hung(AssertionError):
    """The server neither answered nor closed the connection in :data:`HANG_SECONDS`."""


class Malformed(AssertionError):
    """The server's answer breaks HTTP/1.1 framing (e.g. a byte after the declared body)."""


class Cut(Malformed):
    """The connection closed before the answer's body was complete (its framing says so):
    the client can tell. ``body`` holds what arrived."""

    def __init__(self, message: str, body: bytes = b"") -> None:
        super().__init__(message)
        self.body = body


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, values latin-1
    body: bytes
    #: The connection closed before the body was complete (only with ``cut_ok``).
    cut: bool = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def request_bytes(base: str, method: bytes, target: bytes,
                  headers: list[tuple[bytes, bytes]] = (), host: bytes | None = None
                  ) -> bytes:
    """A whole HTTP/1.1 request, exactly these bytes; ``Connection: close``."""
    netloc = urlsplit(base).netloc.encode()
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + (netloc if host is None
                                                               else host),
             b"Connection: close", *(k + b": " + v for k, v in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def exchange(base: str, request: bytes, head: bool = False, cut_ok: bool = False
             ) -> list[Answer]:
    """Send ``request`` byte for byte and read until the server closes: every answer
    (several when the bytes held several requests; none when the server closed without
    answering). Raises :class:`Hung` or :class:`Malformed` (:class:`Cut` unless
    ``cut_ok``: see :func:`parse_answers`)."""
    where = urlsplit(base)
    received = bytearray()
    deadline = time.monotonic() + HANG_SECONDS
    with socket.create_connection((where.hostname, where.port), timeout=HANG_SECONDS) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # a server that refuses early closes: read what it said
        while True:
            if time.monotonic() > deadline:
                raise Hung(f"no end of answer to {request[:200]!r}")
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                raise Hung(f"no end of answer to {request[:200]!r}") from None
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return parse_answers(bytes(received), head, cut_ok)


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body (RFC 9112 §7.1) and what follows it; strict. :class:`Cut` when the
    bytes end before the last chunk (``body`` has the chunks' bytes so far)."""
    body = bytearray()
    while True:
        size_line, crlf, data = data.partition(b"\r\n")
        if not crlf:
            raise Cut("chunked body cut short", bytes(body))
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailer fields, up to the empty line
                line, end, data = data.partition(b"\r\n")
                if not end:
                    raise Cut("chunked body without its last CRLF", bytes(body))
                if not line:
                    return bytes(body), data
        if len(data) < size + 2:
            raise Cut("chunk shorter than its size", bytes(body + data[:size]))
        if data[size:size + 2] != b"\r\n":
            raise Malformed("chunk longer than its size")
        body += data[:size]
        data = data[size + 2:]


def parse_answers(data: bytes, head: bool = False, cut_ok: bool = False) -> list[Answer]:
    """Every response in ``data`` (what the server sent before closing), framed strictly:
    a body longer than its ``Content-Length`` is :class:`Malformed`, one shorter (or a
    chunked body without its last chunk) :class:`Cut`; with ``cut_ok`` the last answer
    is then returned with ``cut`` set and the bytes that arrived."""
    answers = []
    while data:
        top, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise Malformed(f"answer without end of headers: {data[:200]!r}")
        status_line, *fields = top.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise Malformed(f"bad status line {status_line!r}")
        status = int(parts[1])
        headers = []
        for line in fields:
            name, colon, value = line.partition(b":")
            if not colon:
                raise Malformed(f"bad header line {line!r}")
            headers.append((name.strip().lower().decode("latin-1"),
                            value.strip().decode("latin-1")))
        answer = Answer(status, headers, b"")
        length = answer.header("content-length")
        if head or status in (204, 304) or 100 <= status < 200:
            body, data = b"", rest
        elif (answer.header("transfer-encoding") or "").lower() == "chunked":
            try:
                body, data = _dechunk(rest)
            except Cut as cut:
                if not cut_ok:
                    raise
                answer.body, answer.cut = cut.body, True
                answers.append(answer)
                return answers
        elif length is not None:
            size = int(length)
            if len(rest) < size:
                if not cut_ok:
                    raise Cut(f"body of {len(rest)} bytes, Content-Length {size}", rest)
                answer.body, answer.cut = rest, True
                answers.append(answer)
                return answers
            body, data = rest[:size], rest[size:]
        else:
            body, data = rest, b""
        answer.body = body
        answers.append(answer)
        if data and not data.startswith(b"HTTP/1."):
            raise Malformed(f"{len(data)} bytes after the body of a {status}: {data[:80]!r}")
    return answers


# --- judging answers ----------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class Corpus:
    """The files a fuzzed server holds, to check answers against."""

    #: Every file's bytes by its strong ETag (``"<sha256>"``).
    by_etag: dict[str, bytes] = field(default_factory=dict)
    #: Every file's bytes by its size (sizes are made unique, so a 206's
    #: ``Content-Range`` total names its file even without an ETag).
    by_size: dict[int, bytes] = field(default_factory=dict)
    #: Markers only guarded files contain (every few hundred bytes of them).
    secrets: list[bytes] = field(default_factory=list)
    #: ETags of guarded files.
    guarded_etags: set[str] = field(default_factory=set)
    #: Buckets that hold only guarded files: a redirect there is a leak.
    guarded_buckets: set[str] = field(default_factory=set)

    def add(self, blob: bytes, guarded: bool = False) -> bytes:
        import hashlib

        if len(blob) in self.by_size and self.by_size[len(blob)] != blob:
            raise ValueError(f"two corpus files of {len(blob)} bytes")
        etag = f'"{hashlib.sha256(blob).hexdigest()}"'
        self.by_etag[etag] = blob
        self.by_size[len(blob)] = blob
        if guarded:
            self.guarded_etags.add(etag)
        return blob


def secret_file(marker: bytes, size: int) -> bytes:
    """``size`` bytes with ``marker`` every 64 bytes: any range of 64 + len(marker) bytes
    or more of it holds the whole marker."""
    unit = (marker + b"." * 64)[:64]
    assert len(marker) < 48
    return (unit * (size // 64 + 1))[:size]


def _whole(corpus: Corpus, answer: Answer, size: int | None) -> bytes | None:
    etag = answer.header("etag")
    if etag in corpus.by_etag:
        return corpus.by_etag[etag]
    return corpus.by_size.get(size) if size is not None else None


def _check_range(corpus: Corpus, answer: Answer, content_range: str | None, piece: bytes
                 ) -> str | None:
    """What is wrong with one range of a 206 (None: exactly the bytes it names)."""
    found = _CONTENT_RANGE.fullmatch(content_range or "")
    if found is None:
        return f"206 with Content-Range {content_range!r}"
    first, last, size = (int(g) for g in found.groups())
    whole = _whole(corpus, answer, size)
    if whole is None:
        return f"206 of an unknown {size}-byte representation"
    if len(whole) != size or not first <= last < size:
        return f"Content-Range {content_range} of a {len(whole)}-byte file"
    if piece != whole[first:last + 1]:
        return f"206 {content_range}: {len(piece)} bytes that are not the file's"
    return None


def _parts(answer: Answer) -> list[tuple[str | None, bytes]] | str:
    """The (Content-Range, bytes) of each part of a multipart/byteranges body."""
    kind = answer.header("content-type") or ""
    found = re.search(r"boundary=([^;\s]+)", kind)
    if found is None:
        return f"multipart 206 without a boundary: {kind!r}"
    delimiter = b"\r\n--" + found.group(1).encode("latin-1")
    chunks = answer.body.split(delimiter)
    if chunks[0] != b"" or chunks[-1] != b"--\r\n":
        return "multipart body not framed by its boundary"
    parts = []
    for chunk in chunks[1:-1]:
        top, sep, piece = chunk.partition(b"\r\n\r\n")
        if not sep:
            return "multipart part without headers"
        fields = dict(line.split(b": ", 1) for line in top.split(b"\r\n")[1:] if b": " in line)
        value = fields.get(b"Content-Range")
        parts.append((value.decode("latin-1") if value else None, piece))
    return parts


def problems(answer: Answer, corpus: Corpus, head: bool) -> list[str]:
    """Everything wrong with one answer (besides leaks, which :func:`judge` counts)."""
    found = []
    if answer.status >= 500:
        found.append(f"{answer.status}: {answer.body[:200]!r}")
    if answer.status == 206 and not head:
        if (answer.header("content-type") or "").startswith("multipart/byteranges"):
            parts = _parts(answer)
            if isinstance(parts, str):
                found.append(parts)
            else:
                found += [p for p in (_check_range(corpus, answer, r, b) for r, b in parts) if p]
        else:
            problem = _check_range(corpus, answer, answer.header("content-range"), answer.body)
            if problem:
                found.append(problem)
    if answer.status == 200 and not head:
        whole = corpus.by_etag.get(answer.header("etag") or "")
        if whole is not None and (answer.body != whole if not answer.cut
                                  else not whole.startswith(answer.body)):
            found.append(f"200 with ETag {answer.header('etag')} but other bytes")
    return found


def leaked(answer: Answer, corpus: Corpus) -> int:
    """How many guarded bytes ``answer`` gives away (0 if none): a body holding a guarded
    marker, a 2xx/304 with a guarded file's ETag, a redirect into a guarded bucket."""
    if any(marker in answer.body for marker in corpus.secrets):
        return len(answer.body)
    if answer.status in (200, 206, 304) and answer.header("etag") in corpus.guarded_etags:
        return max(len(answer.body), 1)
    location = answer.header("location") or ""
    if 300 <= answer.status < 400 and any(f"/{b}/" in location for b in corpus.guarded_buckets):
        return 1
    return 0


def judge(tally: Tally, corpus: Corpus, answers: list[Answer], what: str, head: bool = False,
          guarded_ok: bool = False) -> list[Answer]:
    """Count ``answers`` to one request described by ``what`` and assert each is clean:
    no 5xx, exact ranges, no guarded byte (unless ``guarded_ok``: the request carried
    credentials)."""
    tally.counts["requests"] += 1
    if not answers:
        tally.counts["no_answer"] += 1
    for answer in answers:
        tally.counts[f"status {answer.status}"] += 1
        if answer.status == 206 and not head:
            tally.counts["checked_206"] += 1
        elif answer.status == 200 and not head and answer.header("etag") in corpus.by_etag:
            tally.counts["checked_200"] += 1
        wrong = problems(answer, corpus, head)
        if answer.status >= 500:
            tally.counts["5xx"] += 1
        bytes_out = 0 if guarded_ok else leaked(answer, corpus)
        if bytes_out:
            tally.counts["leaked_bytes"] += bytes_out
            wrong.append(f"leaked {bytes_out} guarded bytes ({answer.status})")
        if wrong:
            for problem in wrong:
                tally.fail(f"{what}: {problem}")
            raise AssertionError(f"{what}: {'; '.join(wrong)}")
    return answers


# --- certificates -----------------------------------------------------------------------------

def certificate(subject: str, issuer_key: object, issuer: str, key: object, *,
                ca: bool = False, days: int = 30, padding: int = 0) -> object:
    """An X.509 certificate (``cryptography``), ``padding`` DNS names long: 480 make
    about 16 KiB once percent-encoded, as a proxy forwards it in X-CLIENT-CERT."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if padding:
        names = [x509.DNSName(f"{i:06d}.padding.example") for i in range(padding)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()
