"""Differential parity: one corpus of requests to our app and to pulpcore-content, both
serving the same database, compared on status, the headers that matter and the body.

    python -m conformance.parity [--report conformance/parity.md] [--domains]

Runs on the stack of ``make pulp-up`` (started here if it is not up). The two apps it
asks are its own pair of processes on that stack's database, each with **its own Redis
database** (``REDIS_DBS``, emptied first), so neither ever answers from an entry the
other wrote. Requests are written to the socket byte for byte (``..``, ``%2e%2e``,
``//``, a NUL reach the app as sent) with the same ``Host`` for both apps. The corpus is
sent twice: our app first, then pulpcore-content first; the second pass meets each
app's own warm cache, the first its cold one (``X-PULP-CACHE`` is compared).

Every difference (one header, the status, the body) needs a rule in ``RULES`` matching
that field and both values; a row with any difference no rule explains is
``UNEXPLAINED`` and makes the command fail.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from conformance import stack as stacks

#: Headers compared by value: everything a client or a proxy acts on.
#: ``transport`` is not a header: how an answer that was not whole ended (``ask``).
COMPARED = ("content-type", "content-length", "content-range", "content-encoding",
            "content-disposition", "accept-ranges", "etag", "last-modified",
            "cache-control", "vary", "allow", "retry-after", "location",
            "x-pulp-artifact-size", "x-pulp-cache", "transport")
#: Redis databases of the parity pair (ours, pulpcore-content), emptied before each run,
#: on the stack's own redis-server (``stacks.start_redis``: no other checkout's stack or
#: parity run uses that server); the stack's apps use its database 0.
REDIS_DBS = (1, 2)
#: The pair's ports, after the stack's four (nginx, API, our app, pulpcore-content).
PAIR_OFFSET = {"asgi": 4, "legacy": 5}
#: The streamed files' upstream, in the stack's ports (parity_plugins' fixtures serve on
#: the same one: the two never run at once on a stack, they share the pair's ports).
UPSTREAM_OFFSET = 6


@dataclass
class Probe:
    """One request; ``path`` is the request target, sent as is (latin-1 bytes)."""

    label: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    #: a target our app must answer with the same status and body (where pulpcore-content
    #: cannot be compared: a difference explaining the whole answer would excuse any body)
    same_as: str | None = None
    #: what our answer must be, from the database, whatever pulpcore-content answers:
    #: ``status`` and the file's validators (``etag``, ``last-modified``: ``_served``);
    #: checked by ``unexpected`` and read by the rules whose ``ours`` is ``EXPECTED``
    expect: dict[str, str] = field(default_factory=dict)
    #: what the database says of the target, for rules that hold only there (``Rule.fact``)
    facts: frozenset[str] = frozenset()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _upstream(files: dict[str, bytes], port: int) -> str:
    """A loopback HTTP server on ``port`` for the streamed files (both apps fetch from
    it)."""
    import tempfile
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tempfile.mkdtemp(prefix="parity-upstream-")
    for name, blob in files.items():
        with open(os.path.join(root, name), "wb") as out:
            out.write(blob)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port),
                                 functools.partial(Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


#: A fact of a request under a checkpoint's timestamp: the file is not in that
#: checkpoint's publication but is in the repository's latest one (``_in_checkpoint``).
LATER_ONLY = "only in a publication after the checkpoint's"
#: A fact of a request to a distribution with a content guard (the artifact
#: distribution's is pulpcore's own): every answer of ours there says ``private``.
GUARDED = "the distribution has a content guard"


def _served(version: Any, relative_path: str) -> dict[str, str]:
    """The validators our app must send for a file of ``version``, from the database: the
    ETag is its artifact's sha256 (content-addressed), Last-Modified when its content
    joined the repository, pulpcore's own heuristic (``Handler._set_last_modified_header``
    in pulpcore/content/handler.py: the version's RepositoryContent row for the content,
    else the version's creation; docs/differences.md, Last-Modified of local files)."""
    from django.utils.http import http_date
    from pulpcore.app.models import ContentArtifact

    found = ContentArtifact.objects.select_related("artifact").get(
        content__in=version.content, relative_path=relative_path)
    joined = version._content_relationships().filter(content_id=found.content_id).first()
    when = joined.pulp_created if joined is not None else version.pulp_created
    return {"etag": f'"{found.artifact.sha256}"', "last-modified": http_date(when.timestamp())}


def _file(base: str, served: dict[str, dict[str, str]], label: str, relative_path: str,
          status: str | None, method: str = "GET", **headers: str) -> Probe:
    """A request for a file of the corpus's repository under ``base``: our answer must
    carry its validators and, where HTTP decides it, ``status``."""
    expect = {**served[relative_path], **({"status": status} if status else {})}
    return Probe(label, f"{base}/{quote(relative_path)}", method, headers, expect=expect)


def _in_checkpoint(label: str, under: str, relative_path: str, snapshot: Any,
                   latest: Any) -> Probe:
    """A file asked under ``snapshot``'s timestamp, with what the database says of it: in
    the snapshot, our answer is a 200 with its validators; not in it, a 404 (a checkpoint
    is an exact snapshot, docs/differences.md), and if the ``latest`` publication has it,
    the probe carries ``LATER_ONLY``, the one case where pulpcore-content's 200 (its
    grace-period fallback, ``Distribution.get_fallback_ca``) is explained."""
    target = under + quote(relative_path)
    if snapshot.published_artifact.filter(relative_path=relative_path).exists():
        return Probe(label, target, expect={
            "status": "200", **_served(snapshot.repository_version, relative_path)})
    later = latest.published_artifact.filter(relative_path=relative_path).exists()
    return Probe(label, target, expect={"status": "404"},
                 facts=frozenset({LATER_ONLY}) if later else frozenset())


def corpus(domains: bool = False, upstream_port: int = 0
           ) -> tuple[list[Probe], dict[str, str]]:
    """Distributions of every kind in the stack's database, and requests against them
    (the streamed files' upstream on ``upstream_port``; 0: any free port)."""
    import django

    django.setup()
    from django.utils.http import http_date
    from pulp_file.app.models import FileDistribution, FileRemote
    from pulpcore.app.models import ArtifactDistribution, ContentRedirectContentGuard
    from pulpcore.app.util import get_artifact_url

    from pulp_content_asgi.devtools import data

    u = uuid.uuid4().hex[:6]
    big = os.urandom(300_000)
    files = {"a.txt": b"alpha\n" * 100, "dir/b.bin": big, "dir/sub/c.json": b"{}",
             "empty": b"", "sp ace.txt": b"space", "ünï.txt": b"unicode",
             "pkg.tar.gz": b"\x1f\x8b" + b"x" * 50}
    repo = data.repository(f"parity-{u}", files)
    # Checkpoints: two, a second apart; the same second separates the files that joined
    # ``repo`` first from ``late.txt`` and from the version and publications served, so a
    # Last-Modified taken from any of those is a second off the join time (``_served``).
    checkpointed = data.repository(f"parity-{u}-ckpt", {"k.txt": b"first"})
    first = data.publish(checkpointed.latest_version(), checkpoint=True)
    time.sleep(1.1)
    later = data.publish(data.add_files(checkpointed, {"k2.txt": b"second"}), checkpoint=True)
    data.distribute(f"parity-{u}/ckpt", repository=checkpointed, checkpoint=True)
    stamp = first.pulp_created.strftime("%Y%m%dT%H%M%SZ")
    version = data.add_files(repo, {"late.txt": b"joined a second later\n"})
    served = {path: _served(version, path) for path in [*files, "late.txt"]}
    data.distribute(f"parity-{u}/pub", publication=data.publish(version))
    data.distribute(f"parity-{u}/pass", publication=data.publish(version, pass_through=True))
    data.distribute(f"parity-{u}/ver", repository_version=version)
    data.distribute(f"parity-{u}/nothing")
    data.distribute(f"parity-{u}/odd", publication=data.publish(version))
    guard = ContentRedirectContentGuard.objects.create(name=f"parity-{u}")
    data.distribute(f"parity-{u}/guarded", publication=data.publish(version),
                    content_guard=guard)
    FileDistribution.objects.create(name=f"parity-{u}-hidden", base_path=f"parity-{u}/hidden",
                                    publication=data.publish(version), hidden=True)
    # Streamed (never saved, so each app fetches for itself and both see the same state).
    streamed_files = {"s1.bin": os.urandom(70_000), "s2.txt": b"streamed\n"}
    origin = _upstream(streamed_files, upstream_port)
    remote = FileRemote.objects.create(name=f"parity-{u}", url=f"{origin}/PULP_MANIFEST",
                                       policy="streamed")
    streamed = data.repository(f"parity-{u}-streamed", {
        name: data.OnDemand(f"{origin}/{name}", blob) for name, blob in streamed_files.items()
    }, remote=remote)
    data.distribute(f"parity-{u}/streamed", publication=data.publish(
        streamed.latest_version(), pass_through=True))
    # The artifact distribution (signed URLs from get_artifact_url).
    if not ArtifactDistribution.objects.exists():
        ArtifactDistribution.objects.create(name="artifact-distribution",
                                            base_path=str(uuid.uuid4()))
    artifact = data.artifact_from_bytes(b"signed artifact " + u.encode())
    signed = get_artifact_url(artifact)
    signed_path = signed.split("://", 1)[-1].split("/", 1)[1]
    prefix = stacks.PREFIX
    root = prefix + ("default/" if domains else "")  # where the default domain's paths are
    probes: list[Probe] = [
        Probe("root listing", prefix),
        Probe("root listing HEAD", prefix, "HEAD"),
        Probe("bare prefix", prefix.rstrip("/")),
        Probe("unknown distribution", f"{root}nope-{u}/x"),
        Probe("partial base path", f"{root}parity-{u}"),
        Probe("partial base path slash", f"{root}parity-{u}/"),
        Probe("distribution without slash", f"{root}parity-{u}/nothing"),
        Probe("distribution with nothing to serve", f"{root}parity-{u}/nothing/"),
        Probe("guarded without credentials", f"{root}parity-{u}/guarded/a.txt",
              facts=frozenset({GUARDED})),
        Probe("guarded listing", f"{root}parity-{u}/guarded/", facts=frozenset({GUARDED})),
        _file(f"{root}parity-{u}/hidden", served, "hidden distribution", "a.txt", "200"),
        Probe("method not allowed", f"{root}parity-{u}/pub/a.txt", "POST"),
        # Odd targets go to their own distribution: what one app caches for them (we
        # merge slashes, pulpcore-content caches its 404s) never meets another probe.
        Probe("dot-dot segment", f"{root}parity-{u}/odd/dir/../a.txt"),
        Probe("dot-dot past the prefix", f"{root}parity-{u}/odd/../../../etc/passwd"),
        Probe("dot segment", f"{root}parity-{u}/odd/./a.txt"),
        Probe("encoded dot-dot", f"{root}parity-{u}/odd/%2e%2e/%2e%2e/etc/passwd"),
        Probe("encoded dot-dot inside", f"{root}parity-{u}/odd/dir/%2e%2e/a.txt"),
        Probe("NUL byte, encoded", f"{root}parity-{u}/odd/a.txt%00"),
        Probe("NUL byte, raw", f"{root}parity-{u}/odd/a.txt\x00"),
        # Repeated slashes are merged (docs/differences.md): the file, with its validators.
        _file(f"{root}parity-{u}/odd/", served, "double slash in the file path", "a.txt",
              "200"),
        Probe("double slash between base path segments", f"{root}parity-{u}//odd/a.txt",
              same_as=f"{root}parity-{u}/odd/a.txt", expect={"status": "200",
                                                             **served["a.txt"]}),
        Probe("streamed: file", f"{root}parity-{u}/streamed/s1.bin"),
        Probe("streamed: small file", f"{root}parity-{u}/streamed/s2.txt"),
        Probe("streamed: HEAD", f"{root}parity-{u}/streamed/s1.bin", "HEAD"),
        Probe("streamed: range", f"{root}parity-{u}/streamed/s1.bin",
              headers={"Range": "bytes=100-199"}),
        Probe("streamed: listing", f"{root}parity-{u}/streamed/"),
        Probe("checkpoint: root listing", f"{root}parity-{u}/ckpt/"),
        Probe("checkpoint: timestamp", f"{root}parity-{u}/ckpt/{stamp}/"),
        Probe("checkpoint: timestamp without slash", f"{root}parity-{u}/ckpt/{stamp}"),
        _in_checkpoint("checkpoint: file", f"{root}parity-{u}/ckpt/{stamp}/",
                       "k.txt", first, later),
        _in_checkpoint("checkpoint: file not yet there", f"{root}parity-{u}/ckpt/{stamp}/",
                       "k2.txt", first, later),
        Probe("checkpoint: malformed", f"{root}parity-{u}/ckpt/2024-01-01/"),
        Probe("checkpoint: impossible date", f"{root}parity-{u}/ckpt/20241341T000000Z/"),
        Probe("checkpoint: before the first", f"{root}parity-{u}/ckpt/20000101T000000Z/"),
        Probe("checkpoint: future", f"{root}parity-{u}/ckpt/29990101T000000Z/"),
        Probe("artifact URL: signed", "/" + signed_path, expect={
            "status": "200", "etag": f'"{artifact.sha256}"',
            "last-modified": http_date(artifact.pulp_created.timestamp())},
              facts=frozenset({GUARDED})),
        Probe("artifact URL: signature stripped", "/" + signed_path.split("?")[0],
              facts=frozenset({GUARDED})),
    ]
    for kind in ("pub", "pass", "ver"):
        base = f"{root}parity-{u}/{kind}"
        file = functools.partial(_file, base, served)
        probes += [
            Probe(f"{kind}: without slash", base),
            Probe(f"{kind}: listing", f"{base}/"),
            Probe(f"{kind}: sub listing", f"{base}/dir/"),
            Probe(f"{kind}: sub listing without slash", f"{base}/dir"),
            file(f"{kind}: file", "a.txt", "200"),
            file(f"{kind}: HEAD file", "a.txt", "200", "HEAD"),
            file(f"{kind}: file that joined later", "late.txt", "200"),
            file(f"{kind}: nested file", "dir/sub/c.json", "200"),
            file(f"{kind}: empty file", "empty", "200"),
            file(f"{kind}: space", "sp ace.txt", "200"),
            file(f"{kind}: unicode", "ünï.txt", "200"),
            file(f"{kind}: gzip type", "pkg.tar.gz", "200"),
            Probe(f"{kind}: missing", f"{base}/missing.txt"),
            file(f"{kind}: range", "dir/b.bin", "206", Range="bytes=0-99"),
            file(f"{kind}: suffix range", "dir/b.bin", "206", Range="bytes=-100"),
            file(f"{kind}: open range", "dir/b.bin", "206", Range="bytes=299990-"),
            file(f"{kind}: range past end", "dir/b.bin", "206", Range="bytes=299990-400000"),
            file(f"{kind}: unsatisfiable range", "dir/b.bin", "416", Range="bytes=400000-"),
            # Both apps answer 416; RFC 9110 §14.2 would have the field ignored (200).
            file(f"{kind}: malformed range", "dir/b.bin", None, Range="bytes=abc"),
            file(f"{kind}: If-None-Match *", "a.txt", "304", **{"If-None-Match": "*"}),
            file(f"{kind}: If-Modified-Since future", "a.txt", None,
                 **{"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
            file(f"{kind}: If-Modified-Since past", "a.txt", "200",
                 **{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}),
        ]
    if domains:
        from pulpcore.app.models import Domain
        from pulpcore.app.util import set_domain

        default = Domain.objects.get(name="default")
        other = data.filesystem_domain(f"parity-{u}")
        set_domain(other)
        try:
            theirs = data.repository(f"parity-{u}-other", {"a.txt": b"other domain"})
            data.distribute(f"parity-{u}/pub", publication=data.publish(
                theirs.latest_version()))
            elsewhere = _served(theirs.latest_version(), "a.txt")
        finally:
            set_domain(default)
        probes += [
            Probe("domains: domain root listing", f"{root}"),
            Probe("domains: domain without slash", root.rstrip("/")),
            Probe("domains: other domain listing", f"{prefix}{other.name}/"),
            Probe("domains: other domain file", f"{prefix}{other.name}/parity-{u}/pub/a.txt",
                  expect={"status": "200", **elsewhere}),
            Probe("domains: unknown domain", f"{prefix}nope-{u}/"),
            Probe("domains: unknown domain file", f"{prefix}nope-{u}/parity-{u}/pub/a.txt"),
        ]
    return probes, {"unique": u}


def ask(port: int, host: str, probe: Probe) -> Answer:
    """Write the request to the socket byte for byte (no client normalizes the target)
    and parse the answer with http.client (chunked and HEAD bodies handled there). A body
    cut short is kept, with a ``transport`` field saying so."""
    lines = [f"{probe.method} {probe.path} HTTP/1.1", f"Host: {host}",
             "Connection: close", "Accept-Encoding: identity",
             *(f"{name}: {value}" for name, value in probe.headers.items())]
    if probe.method == "POST":
        lines.append("Content-Length: 0")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = http.client.HTTPResponse(sock, method=probe.method)
        response.begin()
        headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            body = response.read()
        except http.client.IncompleteRead as cut:  # kept: a difference, not a crash
            body = cut.partial
            headers["transport"] = (f"cut short after {len(cut.partial)} body bytes, "
                                    f"{cut.expected} more expected")
        return Answer(response.status, headers, body)


@dataclass(frozen=True)
class Difference:
    """One field that differs: ``status``, a header name or ``body``; values as text,
    ``<absent>`` for a missing header."""

    field: str
    ours: str
    theirs: str

    def __str__(self) -> str:
        return f"{self.field}: {self.ours!r} vs {self.theirs!r}"


def _body_text(body: bytes) -> str:
    return body[:160].decode("latin-1") + ("…" if len(body) > 160 else "")


def differences(ours: Answer, theirs: Answer,
                compared: tuple[str, ...] = COMPARED) -> list[Difference]:
    """Status, every ``compared`` header and the body, whatever the status."""
    found = []
    if ours.status != theirs.status:
        found.append(Difference("status", str(ours.status), str(theirs.status)))
    for name in compared:
        a, b = ours.headers.get(name, "<absent>"), theirs.headers.get(name, "<absent>")
        if a != b:
            found.append(Difference(name, a, b))
    if ours.body != theirs.body:
        found.append(Difference("body", _body_text(ours.body), _body_text(theirs.body)))
    return found


@dataclass(frozen=True)
class Rule:
    """A known difference: ``field`` and both values (full-match regexes), optionally
    only at these statuses of ours, this method, this request target; ``why`` is the
    verdict."""

    field: str
    ours: str
    theirs: str
    why: str
    statuses: tuple[int, ...] = ()
    #: full-match regex over the request target, when the values alone are too loose
    target: str | None = None
    method: str | None = None
    #: the difference accounts for the whole answer (a different status: every header
    #: and the body follow from it)
    whole: bool = False
    #: a fact the probe must carry (``Probe.facts``: what the database says of the target)
    fact: str | None = None

    def explains(self, diff: Difference, probe: Probe, status: int) -> bool:
        ours = (diff.ours == probe.expect.get(self.field) if self.ours == EXPECTED
                else re.fullmatch(self.ours, diff.ours, re.S) is not None)
        return (diff.field == self.field and (not self.statuses or status in self.statuses)
                and (self.method is None or probe.method == self.method)
                and (self.target is None
                     or re.fullmatch(self.target, probe.path, re.S) is not None)
                and (self.fact is None or self.fact in probe.facts)
                and ours and re.fullmatch(self.theirs, diff.theirs, re.S) is not None)


@dataclass(frozen=True)
class PrivateRule(Rule):
    """Cache-Control on a guarded distribution (``GUARDED``): ours must carry exactly
    pulpcore-content's directives without ``public`` and with ``private`` (absent on
    theirs: ``private`` alone), so any other difference in that header stays unexplained.
    Computed here, not with the app's own merge, so the comparison stays independent."""

    def explains(self, diff: Difference, probe: Probe, status: int) -> bool:
        def directives(value: str) -> set[str]:
            return set() if value == ABSENT else {
                d.strip().lower() for d in value.split(",") if d.strip()}

        return (diff.field == "cache-control" and GUARDED in probe.facts
                and directives(diff.ours) == directives(diff.theirs) - {"public"} | {"private"})


SHA256_ETAG = r'"[0-9a-f]{64}"'
AIOHTTP_ETAG = r'"[0-9a-f]+-[0-9a-f]+"'
#: An HTTP date of this century (a 1970 date is a bug, not a policy difference).
HTTP_DATE = r"\w{3}, \d\d \w{3} 2\d{3} \d\d:\d\d:\d\d GMT"
#: A signed artifact URL (pulpcore's ``ArtifactDistribution.artifact_url``).
ARTIFACT_URL = r".*\?expires=\d+&validate_token=.*"
ABSENT = "<absent>"
#: As a rule's ``ours``: exactly the value the probe expects from the database
#: (``Probe.expect``); a probe without one is never explained by that rule.
EXPECTED = "<expected>"
DOT_SEGMENTS = r"(?:.*/)?(?:\.|\.\.|%2e%2e)(?:/.*)?"

#: Every known difference, keyed on the field and both values (and, where the values
#: alone could match elsewhere, the status, the method or the request target).
ETAG = ("deliberate: ETag is the artifact's sha256; pulpcore-content's is aiohttp's "
        "mtime-size (docs/differences.md, ETag of local files)")
LAST_MODIFIED = ("deliberate: Last-Modified is when the content joined the repository; "
                 "pulpcore-content sends the file's mtime, on a 304 too (docs/differences.md)")
LAST_MODIFIED_304 = ("deliberate: our 304 also carries Last-Modified (RFC 9110 §15.4.5; "
                     "docs/differences.md, 304 responses)")
RULES: list[Rule] = [
    PrivateRule("cache-control", "", "",
                "deliberate: every answer of a guarded distribution says private, merged into "
                "what it said (a shared cache must not hand it to another client); "
                "pulpcore-content's 403s and listings say nothing, its files public "
                "(docs/differences.md, Cache-Control of guarded distributions)",
                fact=GUARDED),
    Rule("etag", EXPECTED, AIOHTTP_ETAG, ETAG),
    Rule("last-modified", EXPECTED, HTTP_DATE, LAST_MODIFIED, (200, 206, 304)),
    Rule("last-modified", EXPECTED, ABSENT, LAST_MODIFIED_304, (304,)),
    Rule("content-type", ABSENT, r".+",
         "deliberate: a 304 carries validators only; pulpcore-content's also has "
         "Content-Type (RFC 9110 §15.4.5; docs/differences.md)", (304,)),
    Rule("x-pulp-artifact-size", ABSENT, r"\d+",
         "deliberate: a 304 carries validators only; pulpcore-content's also has "
         "X-PULP-ARTIFACT-SIZE (RFC 9110 §15.4.5; docs/differences.md)", (304,)),
    Rule("content-type", r"text/plain; charset=utf-8", r"application/octet-stream",
         "deliberate: our 416 is a text error; pulpcore-content's an empty "
         "octet-stream (docs/differences.md, 416 responses)", (416,)),
    Rule("body", r"416: Range Not Satisfiable", r"",
         "deliberate: our 416 says why; pulpcore-content's body is empty "
         "(docs/differences.md, 416 responses)", (416,)),
    Rule("allow", r"GET, HEAD", r"GET,HEAD",
         "same list, other spacing (RFC 9110 §5.6.1 list syntax)", (405,)),
    Rule("content-length", ABSENT, r"\d+",
         "deliberate: HEAD of the prefix checks the database (SELECT 1) but renders no "
         "listing to measure (docs/differences.md; Pulp's readiness probe sends this "
         "request)", (200,), target=re.escape(stacks.PREFIX), method="HEAD"),
    Rule("status", "301", "404",
         "deliberate: the bare prefix redirects to the prefix without a proxy "
         "(docs/differences.md)", target=re.escape(stacks.PREFIX.rstrip("/")),
         whole=True),
    Rule("status", "400", r"404",
         "deliberate: '.'/'..' segments (raw or %2e) are a 400 before any lookup; "
         "pulpcore-content looks the literal path up and caches its 404 "
         "(docs/differences.md, paths)", target=DOT_SEGMENTS, whole=True),
    Rule("status", "400", "500",
         "old-app bug: pulpcore-content passes %00 to PostgreSQL (\"text fields cannot "
         "contain NUL\") and answers 500; ours is a 400 (docs/differences.md, paths)",
         target=r".*%00.*", whole=True),
    Rule("body", r"", r"Invalid char in url path.*",
         "both HTTP servers refuse a raw NUL in the request line before any app code; "
         "granian's 400 has no body, aiohttp's names the character (reported: an empty "
         "400 tells the client nothing)", (400,), target=".*\x00.*", whole=True),
    Rule("status", "200", "404",
         "deliberate: repeated slashes are merged before matching, so '//' between "
         "base-path segments finds the distribution; pulpcore-content's matcher does not "
         "(docs/differences.md, repeated slashes)",
         target=r".*[^:]//.*", whole=True),
    Rule("status", "404", "200",
         "deliberate: a checkpoint is an exact snapshot; pulpcore-content serves a file "
         "of a later publication under the old timestamp (its grace-period fallback, "
         "Distribution.get_fallback_ca; docs/differences.md)", fact=LATER_ONLY, whole=True),
    Rule("etag", EXPECTED, ABSENT,
         "deliberate: the artifact distribution's answers carry our file validators; "
         "pulpcore's ArtifactResponse (pulpcore/responses.py) sends none "
         "(docs/differences.md, artifact URLs)", (200,), target=ARTIFACT_URL),
    Rule("last-modified", EXPECTED, ABSENT,
         "deliberate: as the ETag above (docs/differences.md, artifact URLs)", (200,),
         target=ARTIFACT_URL),
    Rule("x-pulp-artifact-size", r"\d+", ABSENT,
         "deliberate: pulpcore's ArtifactResponse sends no X-PULP-ARTIFACT-SIZE "
         "(docs/differences.md, artifact URLs)", (200,), target=ARTIFACT_URL),
]
#: The verdict of a Content-Length that differs only because the bodies do.
FOLLOWS_BODY = "follows from the body difference"



_HREF = re.compile(rb'href="([^"]*)"')
LISTING_HREFS = ("deliberate: listing links are the names percent-encoded, then HTML-escaped "
                 "(they resolve back to their entry); the pages are otherwise identical "
                 "(docs/differences.md, listing links)")


def same_listing_but_hrefs(ours: bytes, theirs: bytes) -> bool:
    """Whether two listing pages differ only in how their links are encoded: every link
    of ours, HTML-unescaped and percent-decoded, is theirs HTML-unescaped, and nothing
    else differs."""
    import html
    from urllib.parse import unquote

    mine, other = _HREF.findall(ours), _HREF.findall(theirs)
    if len(mine) != len(other) or _HREF.sub(b"", ours) != _HREF.sub(b"", theirs):
        return False
    return all(unquote(html.unescape(a.decode())) == html.unescape(b.decode())
               for a, b in zip(mine, other, strict=True))


_TITLES = re.compile(rb"<(title|h1)>Index of [^<]*</\1>")
LISTING_TITLE = ("deliberate: pulpcore-content's checkpoint listing has an empty title, an "
                 "old-app slip (docs/differences.md)")


def same_listing_but_title(ours: bytes, theirs: bytes) -> bool:
    """Whether two listing pages differ only in the title and heading: theirs says
    ``Index of `` and nothing more, ours names the path, and the rest is byte for byte
    the same (the whole page: a body difference shows only its first bytes)."""
    def blank(page: bytes) -> bytes:
        return _TITLES.sub(rb"<\1>Index of </\1>", page)

    return (ours != theirs and len(_TITLES.findall(theirs)) == 2 and blank(theirs) == theirs
            and blank(ours) == blank(theirs))


def verdicts(probe: Probe, ours: Answer, theirs: Answer, diffs: list[Difference],
             rules: list[Rule] | None = None) -> list[str]:
    """One verdict per difference: the first of ``rules`` (default RULES) that explains
    it, a rule that explains the whole answer, a Content-Length that only measures a
    different body, else UNEXPLAINED."""
    def rule_for(diff: Difference) -> Rule | None:
        return next((r for r in (RULES if rules is None else rules)
                     if r.explains(diff, probe, ours.status)), None)

    whole = next((rule for rule in map(rule_for, diffs) if rule and rule.whole), None)
    bodies_differ = any(d.field == "body" for d in diffs)
    found = []
    for diff in diffs:
        rule = rule_for(diff)
        if rule is not None:
            found.append(rule.why)
        elif diff.field == "body" and same_listing_but_hrefs(ours.body, theirs.body):
            found.append(LISTING_HREFS)
        elif diff.field == "body" and same_listing_but_title(ours.body, theirs.body):
            found.append(LISTING_TITLE)
        elif whole is not None:
            found.append(f"follows from the {whole.field} difference")
        elif diff.field == "content-length" and bodies_differ and all(
                answer.headers.get("content-length") in (None, str(len(answer.body)))
                for answer in (ours, theirs)):
            found.append(FOLLOWS_BODY)
        else:
            found.append("UNEXPLAINED")
    return found


#: The validators ``Probe.expect`` may name: every answer about the file carries them
#: (200, 206, 304), an error about it may (a 416).
VALIDATORS = ("etag", "last-modified")
#: The statuses at which our answer must carry the expected validators.
WITH_VALIDATORS = (200, 206, 304)


def unexpected(probe: Probe, ours: Answer) -> list[Difference]:
    """Where our answer is not what the database says it must be (``Probe.expect``): a
    wrong status, a wrong validator, or none where the answer must carry one. Compared
    with the database, not with pulpcore-content: no rule explains these."""
    found = []
    status = probe.expect.get("status")
    if status is not None and str(ours.status) != status:
        found.append(Difference("status, database", str(ours.status), status))
    for name in VALIDATORS:
        want, got = probe.expect.get(name), ours.headers.get(name)
        if want is not None and got != want and (got is not None
                                                or ours.status in WITH_VALIDATORS):
            found.append(Difference(f"{name}, database", got or ABSENT, want))
    return found


def judge(probe: Probe, ours: Answer, theirs: Answer,
          rules: list[Rule] | None = None) -> tuple[list[Difference], list[str]]:
    """Every difference of our answer from pulpcore-content's and from the database's
    expectation, each with its verdict (``verdicts``; ``UNEXPLAINED`` for the latter)."""
    diffs = differences(ours, theirs)
    found = verdicts(probe, ours, theirs, diffs, rules)
    wrong = unexpected(probe, ours)
    return diffs + wrong, found + ["UNEXPLAINED"] * len(wrong)


def _wait_serving(port: int, timeout: float = 120) -> None:
    """Until the app answers its content prefix (any HTTP answer counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{stacks.PREFIX}", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the parity app on port {port} did not start in {timeout}s")


def pair_plan(stack: stacks.Layout) -> dict[str, tuple[int, int, list[str], dict[str, str]]]:
    """name -> (port, Redis database, argv, environment) of our app and pulpcore-content:
    the stack's database and settings, each app on its own Redis database (``REDIS_DBS``,
    never the stack's 0), so neither answers from an entry the other wrote."""
    plan = {}
    for (side, offset), db in zip(PAIR_OFFSET.items(), REDIS_DBS, strict=True):
        port = stack.nginx + offset
        argv = ([os.path.join(stacks.BIN, "pulp-content-asgi"), "--bind",
                 f"127.0.0.1:{port}", "--workers", "1", "--name-template",
                 "asgi-parity-{pid}@{hostname}"] if side == "asgi" else
                [os.path.join(stacks.BIN, "pulpcore-content"), "--bind", f"127.0.0.1:{port}",
                 "--workers", "1"])
        plan[side] = (port, db, argv, {**stacks.environment(stack), "PULP_REDIS_DB": str(db)})
    return plan


def empty_caches(stack: stacks.Layout, dbs: list[int],
                 connect: Callable[..., Any] | None = None) -> None:
    """Empty each of ``dbs`` on the stack's Redis (``connect``: ``redis.Redis``), so no
    answer of this run comes from an entry a previous run wrote."""
    import redis

    for db in dbs:
        try:
            (connect or redis.Redis)(host="127.0.0.1", port=stack.redis, db=db).flushdb()
        except redis.ConnectionError as error:
            raise SystemExit(f"the stack at {stack.origin} has no Redis of its own on port "
                             f"{stack.redis} ({error}); it was started before the stacks "
                             "had one: make pulp-down, then run again") from None


def start_pair(stack: stacks.Layout) -> dict[str, tuple[int, subprocess.Popen[bytes]]]:
    """Our app and pulpcore-content as ``pair_plan`` says, their Redis databases emptied
    first; name -> (port, process)."""
    plan = pair_plan(stack)
    empty_caches(stack, [db for _, db, _, _ in plan.values()])
    pair = {}
    for side, (port, _, argv, env) in plan.items():
        log = open(stack.path("logs", f"parity-{side}.log"), "ab")  # noqa: SIM115
        pair[side] = (port, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, cwd=stack.root, start_new_session=True))
    for port, _ in pair.values():
        _wait_serving(port)
    return pair


def stop_pair(pair: dict[str, tuple[int, subprocess.Popen[bytes]]]) -> None:
    for _, process in pair.values():
        stacks._signal(process.pid, 15)
    for _, process in pair.values():
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stacks._signal(process.pid, 9)
            process.wait()


Row = tuple[str, Probe, Answer, Answer, list[Difference], list[str]]


def probe_all(probes: list[Probe], pair: dict[str, tuple[int, subprocess.Popen[bytes]]],
              host: str, send: Callable[[int, str, Probe], Answer] = ask) -> list[Row]:
    """Both passes: ours first, then pulpcore-content first (``send``: ``ask``)."""
    rows: list[Row] = []
    for name, order in (("ours first", ("asgi", "legacy")),
                        ("theirs first", ("legacy", "asgi"))):
        for probe in probes:
            got = {side: send(pair[side][0], host, probe) for side in order}
            diffs, found = judge(probe, got["asgi"], got["legacy"])
            if probe.same_as is not None:
                reference = send(pair["asgi"][0], host, Probe(probe.label, probe.same_as))
                if (reference.status, reference.body) != (got["asgi"].status,
                                                          got["asgi"].body):
                    diffs.append(Difference(f"ours vs ours at {probe.same_as}",
                                            str(got["asgi"].status),
                                            str(reference.status)))
                    found.append("UNEXPLAINED")
            rows.append((name, probe, got["asgi"], got["legacy"], diffs, found))
    return rows


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\x00", "\\0").replace("`", "'"))


def write_report(path: str, rows: list[Row], domains: bool) -> int:
    """The markdown report; returns the number of unexplained differences."""
    unexplained = sum(v == "UNEXPLAINED" for row in rows for v in row[5])
    same = sum(1 for row in rows if not row[4])
    commit = subprocess.run(["git", "-C", stacks.ROOT, "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    lines = ["# Differential parity with pulpcore-content", "",
             f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at commit "
             f"`{commit}` by `conformance/parity.py`: each request written byte for byte "
             "to our app and to pulpcore-content (one process each, the same database and "
             "settings: cache on, prefix " + stacks.PREFIX
             + (", DOMAIN_ENABLED" if domains else "") + "; each app on its own Redis "
             "database, so no answer comes from the other app's cache entry). Pass "
             "\"ours first\" asks our app first, \"theirs first\" pulpcore-content first; "
             "the second pass meets each app's own warm cache. Compared: status, "
             + ", ".join(COMPARED) + " by value, and the body bytes of every answer.", "",
             f"**{len(rows)} requests: {same} identical, {len(rows) - same} different, "
             f"{unexplained} unexplained differences.**", "",
             "| Pass | Request | Method | asgi | legacy | X-PULP-CACHE asgi / legacy "
             "| Differences → verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, probe, ours, theirs, diffs, texts in rows:
        shown = "<br>".join(f"`{_escape(str(d))}` → {v}"
                            for d, v in zip(diffs, texts, strict=True)) or "identical"
        cache = " / ".join(a.headers.get("x-pulp-cache", "-") for a in (ours, theirs))
        lines.append(f"| {name} | {_escape(probe.label)} `{_escape(probe.path[-40:])}` | "
                     f"{probe.method} | {ours.status} | {theirs.status} | {cache} | {shown} |")
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    return unexplained


def collect(domains: bool) -> list[Row]:
    """The corpus asked of a fresh pair on the stack (started here if it is not up)."""
    stack = stacks.layout(domains)
    started = stacks.ensure_up(stack)
    try:
        probes, _ = corpus(domains, stack.nginx + UPSTREAM_OFFSET)
        pair = start_pair(stack)
        try:
            return probe_all(probes, pair, f"127.0.0.1:{stack.nginx}")
        finally:
            stop_pair(pair)
    finally:
        if started:
            stacks.down(stack)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=None)
    parser.add_argument("--domains", action="store_true", help="the DOMAIN_ENABLED stack")
    args = parser.parse_args()
    args.report = args.report or os.path.join(
        stacks.ROOT, "conformance", "parity-domains.md" if args.domains else "parity.md")
    rows = collect(args.domains)
    unexplained = write_report(args.report, rows, args.domains)
    print(f"Parity: {len(rows)} requests, {sum(1 for r in rows if not r[4])} identical, "
          f"{unexplained} unexplained differences; {args.report}")
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
