"""Differential parity: one corpus of requests to our app and to pulpcore-content, both
serving the same database, compared on status, the headers that matter and the body.

    python -m conformance.parity [--report conformance/parity.md]

Runs on the stack of ``make pulp-up`` (started here if it is not up) and talks to each
app's own port, not through nginx, so each answers for itself. Every difference gets a
verdict: a documented deliberate difference (docs/differences.md), an old-app bug, or
``UNEXPLAINED`` — a bug here, which makes the command fail.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from conformance import stack as stacks

#: Headers compared by value. ETag and Last-Modified are compared by presence: their
#: values differ by design (sha256 vs mtime-size; repository time vs file mtime).
COMPARED = ("content-type", "content-length", "content-range", "accept-ranges", "location",
            "x-pulp-artifact-size", "content-disposition")
BY_PRESENCE = ("etag", "last-modified")


@dataclass
class Probe:
    label: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _upstream(files: dict[str, bytes]) -> str:
    """A loopback HTTP server for the streamed files (both apps fetch from it)."""
    import functools
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

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def corpus(domains: bool = False) -> tuple[list[Probe], dict[str, str]]:
    """Distributions of every kind in the stack's database, and requests against them."""
    import django

    django.setup()
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
    version = repo.latest_version()
    data.distribute(f"parity-{u}/pub", publication=data.publish(version))
    data.distribute(f"parity-{u}/pass", publication=data.publish(version, pass_through=True))
    data.distribute(f"parity-{u}/ver", repository_version=version)
    data.distribute(f"parity-{u}/nothing")
    guard = ContentRedirectContentGuard.objects.create(name=f"parity-{u}")
    data.distribute(f"parity-{u}/guarded", publication=data.publish(version),
                    content_guard=guard)
    FileDistribution.objects.create(name=f"parity-{u}-hidden", base_path=f"parity-{u}/hidden",
                                    publication=data.publish(version), hidden=True)
    # Streamed (never saved, so each app fetches for itself and both see the same state).
    streamed_files = {"s1.bin": os.urandom(70_000), "s2.txt": b"streamed\n"}
    origin = _upstream(streamed_files)
    remote = FileRemote.objects.create(name=f"parity-{u}", url=f"{origin}/PULP_MANIFEST",
                                       policy="streamed")
    streamed = data.repository(f"parity-{u}-streamed", {
        name: data.OnDemand(f"{origin}/{name}", blob) for name, blob in streamed_files.items()
    }, remote=remote)
    data.distribute(f"parity-{u}/streamed", publication=data.publish(
        streamed.latest_version(), pass_through=True))
    # Checkpoints: two, a second apart.
    checkpointed = data.repository(f"parity-{u}-ckpt", {"k.txt": b"first"})
    first = data.publish(checkpointed.latest_version(), checkpoint=True)
    time.sleep(1.1)
    data.publish(data.add_files(checkpointed, {"k2.txt": b"second"}), checkpoint=True)
    data.distribute(f"parity-{u}/ckpt", repository=checkpointed, checkpoint=True)
    stamp = first.pulp_created.strftime("%Y%m%dT%H%M%SZ")
    # The artifact distribution (signed URLs from get_artifact_url).
    if not ArtifactDistribution.objects.exists():
        ArtifactDistribution.objects.create(name="artifact-distribution",
                                            base_path=str(uuid.uuid4()))
    signed = get_artifact_url(data.artifact_from_bytes(b"signed artifact " + u.encode()))
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
        Probe("guarded without credentials", f"{root}parity-{u}/guarded/a.txt"),
        Probe("guarded listing", f"{root}parity-{u}/guarded/"),
        Probe("hidden distribution", f"{root}parity-{u}/hidden/a.txt"),
        Probe("method not allowed", f"{root}parity-{u}/pub/a.txt", "POST"),
        Probe("dot-dot segment", f"{root}parity-{u}/pub/dir/../a.txt"),
        Probe("encoded dot-dot", f"{root}parity-{u}/pub/%2e%2e/%2e%2e/etc/passwd"),
        Probe("NUL byte", f"{root}parity-{u}/pub/a.txt%00"),
        Probe("double slash", f"{root}parity-{u}//pub/a.txt"),
        Probe("streamed: file", f"{root}parity-{u}/streamed/s1.bin"),
        Probe("streamed: small file", f"{root}parity-{u}/streamed/s2.txt"),
        Probe("streamed: HEAD", f"{root}parity-{u}/streamed/s1.bin", "HEAD"),
        Probe("streamed: range", f"{root}parity-{u}/streamed/s1.bin",
              headers={"Range": "bytes=100-199"}),
        Probe("streamed: listing", f"{root}parity-{u}/streamed/"),
        Probe("checkpoint: root listing", f"{root}parity-{u}/ckpt/"),
        Probe("checkpoint: timestamp", f"{root}parity-{u}/ckpt/{stamp}/"),
        Probe("checkpoint: timestamp without slash", f"{root}parity-{u}/ckpt/{stamp}"),
        Probe("checkpoint: file", f"{root}parity-{u}/ckpt/{stamp}/k.txt"),
        Probe("checkpoint: file not yet there", f"{root}parity-{u}/ckpt/{stamp}/k2.txt"),
        Probe("checkpoint: malformed", f"{root}parity-{u}/ckpt/2024-01-01/"),
        Probe("checkpoint: impossible date", f"{root}parity-{u}/ckpt/20241341T000000Z/"),
        Probe("checkpoint: before the first", f"{root}parity-{u}/ckpt/20000101T000000Z/"),
        Probe("checkpoint: future", f"{root}parity-{u}/ckpt/29990101T000000Z/"),
        Probe("artifact URL: signed", "/" + signed_path),
        Probe("artifact URL: signature stripped", "/" + signed_path.split("?")[0]),
    ]
    for kind in ("pub", "pass", "ver"):
        base = f"{root}parity-{u}/{kind}"
        probes += [
            Probe(f"{kind}: without slash", base),
            Probe(f"{kind}: listing", f"{base}/"),
            Probe(f"{kind}: sub listing", f"{base}/dir/"),
            Probe(f"{kind}: sub listing without slash", f"{base}/dir"),
            Probe(f"{kind}: file", f"{base}/a.txt"),
            Probe(f"{kind}: HEAD file", f"{base}/a.txt", "HEAD"),
            Probe(f"{kind}: nested file", f"{base}/dir/sub/c.json"),
            Probe(f"{kind}: empty file", f"{base}/empty"),
            Probe(f"{kind}: space", f"{base}/sp%20ace.txt"),
            Probe(f"{kind}: unicode", f"{base}/%C3%BCn%C3%AF.txt"),
            Probe(f"{kind}: gzip type", f"{base}/pkg.tar.gz"),
            Probe(f"{kind}: missing", f"{base}/missing.txt"),
            Probe(f"{kind}: range", f"{base}/dir/b.bin", headers={"Range": "bytes=0-99"}),
            Probe(f"{kind}: suffix range", f"{base}/dir/b.bin",
                  headers={"Range": "bytes=-100"}),
            Probe(f"{kind}: open range", f"{base}/dir/b.bin",
                  headers={"Range": "bytes=299990-"}),
            Probe(f"{kind}: range past end", f"{base}/dir/b.bin",
                  headers={"Range": "bytes=299990-400000"}),
            Probe(f"{kind}: unsatisfiable range", f"{base}/dir/b.bin",
                  headers={"Range": "bytes=400000-"}),
            Probe(f"{kind}: malformed range", f"{base}/dir/b.bin",
                  headers={"Range": "bytes=abc"}),
            Probe(f"{kind}: If-None-Match *", f"{base}/a.txt",
                  headers={"If-None-Match": "*"}),
            Probe(f"{kind}: If-Modified-Since future", f"{base}/a.txt",
                  headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
            Probe(f"{kind}: If-Modified-Since past", f"{base}/a.txt",
                  headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}),
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
        finally:
            set_domain(default)
        probes += [
            Probe("domains: domain root listing", f"{root}"),
            Probe("domains: domain without slash", root.rstrip("/")),
            Probe("domains: other domain listing", f"{prefix}{other.name}/"),
            Probe("domains: other domain file", f"{prefix}{other.name}/parity-{u}/pub/a.txt"),
            Probe("domains: unknown domain", f"{prefix}nope-{u}/"),
            Probe("domains: unknown domain file", f"{prefix}nope-{u}/parity-{u}/pub/a.txt"),
        ]
    return probes, {"unique": u}


def ask(client: httpx.Client, origin: str, probe: Probe) -> Answer:
    request = client.build_request(probe.method, origin + probe.path, headers=probe.headers)
    request.url = request.url.copy_with(raw_path=probe.path.encode())
    response = client.send(request)
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Answer(response.status_code, headers, response.content)


def differences(ours: Answer, theirs: Answer) -> list[str]:
    found = []
    if ours.status != theirs.status:
        found.append(f"status {ours.status} vs {theirs.status}")
    if ours.status == theirs.status:
        for name in COMPARED:
            a, b = ours.headers.get(name), theirs.headers.get(name)
            if a != b:
                found.append(f"{name}: {a!r} vs {b!r}")
        for name in BY_PRESENCE:
            if (name in ours.headers) != (name in theirs.headers):
                found.append(f"{name} {'only ours' if name in ours.headers else 'only theirs'}")
        if ours.body != theirs.body and ours.status < 300:
            found.append(f"body ({len(ours.body)} vs {len(theirs.body)} bytes)")
    return found


#: Verdicts for known differences: (predicate over label and differences, verdict).
Rule = tuple[Callable[[str, list[str]], bool], str]
RULES: list[Rule] = [
    (lambda label, diffs: label == "bare prefix",
     "deliberate: 301 to the prefix without a proxy (differences.md)"),
    (lambda label, diffs: label in ("dot-dot segment", "encoded dot-dot", "NUL byte"),
     "deliberate: 400 for dot segments and control characters (differences.md)"),
    (lambda label, diffs: label == "double slash",
     "deliberate: repeated slashes merged as nginx does (differences.md)"),
    (lambda label, diffs: all(d in ("last-modified only ours", "etag only ours")
                              or d.startswith(("last-modified:", "etag:")) for d in diffs),
     "deliberate: strong sha256 ETag / repository Last-Modified (differences.md)"),
    (lambda label, diffs: label == "root listing HEAD"
     and all(d.startswith("content-length") for d in diffs),
     "deliberate: HEAD of the prefix is the database-free liveness probe (differences.md)"),
    (lambda label, diffs: "range" in label
     and all(d.startswith(("content-type", "content-length")) for d in diffs),
     "deliberate: a 416 says why in a short text body (differences.md)"),
    (lambda label, diffs: "If-None-Match" in label
     and all(d.startswith(("content-type", "x-pulp-artifact-size")) for d in diffs),
     "old-app quirk: pulpcore replays content headers on a 304 from its cache; a 304 "
     "carries validators only (RFC 9110 §15.4.5)"),
    (lambda label, diffs: "If-Modified-Since" in label,
     "deliberate: validators differ (Last-Modified from the repository, differences.md)"),
]


def verdict(label: str, diffs: list[str]) -> str:
    for predicate, text in RULES:
        if predicate(label, diffs):
            return text
    return "UNEXPLAINED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=None)
    parser.add_argument("--domains", action="store_true", help="the DOMAIN_ENABLED stack")
    args = parser.parse_args()
    args.report = args.report or os.path.join(
        stacks.ROOT, "conformance", "parity-domains.md" if args.domains else "parity.md")
    stack = stacks.layout(args.domains)
    started = False
    if stacks._get(f"{stack.origin}/pulp/api/v3/status/") is None:
        stacks.up(stack)
        started = True
    os.environ.update({k: v for k, v in stacks.environment(stack).items()
                       if k in ("PULP_SETTINGS", "DJANGO_SETTINGS_MODULE")})
    try:
        probes, _ = corpus(args.domains)
        time.sleep(1)
        rows = []
        with httpx.Client(timeout=60) as client:
            for probe in probes:
                ours = ask(client, f"http://127.0.0.1:{stack.asgi}", probe)
                theirs = ask(client, f"http://127.0.0.1:{stack.legacy}", probe)
                diffs = differences(ours, theirs)
                rows.append((probe, ours, theirs, diffs, verdict(probe.label, diffs)
                             if diffs else ""))
    finally:
        if started:
            stacks.down(stack)
    same = sum(1 for row in rows if not row[3])
    unexplained = [row for row in rows if row[4] == "UNEXPLAINED"]
    lines = ["# Differential parity with pulpcore-content", "",
             f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
             "`make parity` (`conformance/parity.py`): each request sent to our app and to "
             "pulpcore-content, both serving the same database with the same settings "
             "(cache on, prefix " + stacks.PREFIX
             + (", DOMAIN_ENABLED" if args.domains else "") + "). Compared: status, "
             + ", ".join(COMPARED) + "; ETag and Last-Modified by presence; body bytes of "
             "2xx answers.", "",
             f"**{len(rows)} requests: {same} identical, {len(rows) - same} different, "
             f"{len(unexplained)} unexplained.**", "",
             "| Request | Method | asgi | legacy | Differences | Verdict |",
             "|---|---|---|---|---|---|"]
    for probe, ours, theirs, diffs, text in rows:
        shown = "; ".join(diffs).replace("|", "\\|") or "identical"
        lines.append(f"| {probe.label} | {probe.method} | {ours.status} | {theirs.status} | "
                     f"{shown} | {text} |")
    with open(args.report, "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"Parity: {len(rows)} requests, {same} identical, {len(unexplained)} unexplained; "
          f"{args.report}")
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
