"""``make clients``: real package clients against Pulp's content through the front door.

For every plugin with a client (rpm: dnf and dnf with ``config.repo``; deb: apt-get; python:
pip; npm: npm; gem: gem; container: skopeo and podman; maven: mvn; ansible:
ansible-galaxy; ostree: ostree) and each download policy (``immediate``, ``on_demand``;
maven: ``pull_through``, ansible: an ``upload``):
the local upstream is built offline (``conformance/fixtures``), Pulp syncs it through its
REST API, publishes and distributes it (``conformance/parity_plugins.create``), and the
client fetches the package through the stack's nginx — once with nginx sending content
to our app, once to pulpcore-content (the baseline column). What each client got is
checked byte for byte against the upstream's package. On-demand and pull-through content
must be saved by the first fetch and then served from storage; between the columns it is
made on-demand again (reclaimed; pull-through content removed by the orphan cleanup) and
the response cache is emptied, so each app answers on its own.

Integrity oracles: with on-demand content reclaimed and the upstream package tampered
(same size, one byte flipped), the client must reject what it gets and nothing may be
saved. Ranges: ``curl -C -`` and ``aria2c -x4`` on a published and on an on-demand 8 MiB
file, ``zckdl`` taking the delta of a zchunk file by multi-range requests (pulp_file).

The report (``clients/report.md``, or ``--report``) is generated: commit, date, client
versions, pass/fail per client, policy and app, the failure text. Exit status 1 when a
row fails against our app, or a baseline failure is not explained in ``EXPLAINED``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from clients import drivers
from conformance import fixtures
from conformance import parity_plugins as plugins
from conformance import stack as stacks

#: Plugins with a client here, in report order.
PLUGINS = ("rpm", "deb", "python", "npm", "gem", "container", "maven", "ansible", "ostree",
           "file")
#: The CI slice: the clients whose tools are there anyway (ostree builds the fixture,
#: ansible-galaxy comes with pulp-ansible) or cheap to install. Not in it: mvn (Maven's
#: dependency plugin brings ~90 Java library packages), podman beside skopeo
#: (``run_clients(full=False)``: the engine's packages, for the registry path skopeo
#: already drives), npm and gem (as before); dev/client-tools.sh installs accordingly.
CI_PLUGINS = ("rpm", "deb", "python", "container", "ansible", "ostree", "file")
APPS = ("asgi", "legacy")
#: The package files the integrity oracle tampers (one byte flipped, same size).
TAMPERED = (".rpm", ".deb", ".whl", ".tgz", ".gem", ".jar", ".filez")
#: Seconds an app may take to record its verdict on a tampered download (its artifact
#: saved, or its remote artifact marked failed): a bound for an app that never records
#: one, not a wait a working app meets (it records one within moments of the download).
VERDICT_DEADLINE = 120.0
#: The policies whose content the apps fetch from the upstream when a client asks.
FETCHED = ("on_demand", "pull_through")
#: The fixtures' upstreams the clients are run against besides every plugin's immediate
#: and on_demand ones (the parity corpus has more: streamed, pull-through of python,
#: npm and container, ansible on demand).
CLIENT_UPSTREAMS = {("maven", "pull_through"), ("ansible", "upload"),
                    ("container", "immediate"), ("container", "on_demand")}
APP_NAMES = {"asgi": "pulp-content-asgi", "legacy": "pulpcore-content"}
#: Baseline (pulpcore-content) failures that are the old app's, by (check, policy) →
#: why. Anything failing against our app is never explained away.
_NPM = ("pulp_npm's packument has no `version` in its version entries, which npm 11 "
        "refuses (EINCOMPLETEMANIFEST); our port adds `name`, `version` and `integrity`")
#: Failures in both columns that a plugin causes, by (check, policy) → the cause, checked
#: in the plugin's code. Shown as failures; not counted. (None left: where a plugin records
#: no digest, our app holds the download to what the upstream declares, below.)
PLUGIN_BUGS: dict[tuple[str, str], str] = {}
#: pulpcore-content saves what the upstream sent where the plugin gives it no digest to
#: check; ours learns what the upstream itself declares (pulp_content_asgi.plugin.upstream,
#: docs/differences.md) and refuses a mismatch.
_NPM_DIGESTS = ("pulp_npm's sync records no digest for tarballs (`DeclarativeArtifact("
                "artifact=Artifact())` in `synchronizing.py`) and pulpcore-content checks "
                "nothing else, so it saves a tampered upstream tarball; ours holds the "
                "tarball (and its packument's `integrity`) to the registry's version "
                "document (`dist.integrity`)")
_OSTREE_DIGESTS = ("pulp_ostree's sync records no digest for on-demand objects "
                   "(`DeclarativeArtifact(artifact=Artifact(), …)` in "
                   "`app/tasks/synchronizing.py`), so pulpcore-content saves the corrupted "
                   "`.filez` it streams (ostree rejects it: \"Corrupted file object\"); "
                   "ours holds each object to the checksum its name is")
_MAVEN_DIGESTS = ("pull-through content has no expected digest in pulpcore-content: the "
                  "remote artifact is made from the URL alone (`RemoteArtifact(remote="
                  "remote, url=url, content_artifact=ca)`, `content/handler.py`) and "
                  "pulp_maven reads no `.sha1` sidecar, so it saves a jar that does not match "
                  "it (mvn rejects it, \"Checksum validation failed\"; later clients get "
                  "it); ours holds the jar to the upstream's `.sha1`")
_SEVERAL_RANGES = ("pulpcore-content answers 416 to a Range header naming several ranges "
                   "(aiohttp's `^bytes=(\\d*)-(\\d*)$`), so zckdl cannot take its delta; "
                   "ours answers 206 `multipart/byteranges` as nginx does "
                   "(docs/differences.md)")
EXPLAINED: dict[tuple[str, str], str] = {
    ("npm: npm", "immediate"): _NPM,
    ("npm: npm", "on_demand"): _NPM,
    ("npm: npm (tampered upstream)", "on_demand"): (
        f"{_NPM}: npm stops at the packument, never fetches the tarball, and the app "
        "records no verdict on it (the run waits for one in vain); had it been fetched, "
        f"the tampered tarball would have been saved: {_NPM_DIGESTS}"),
    ("maven: mvn (tampered upstream)", "pull_through"): _MAVEN_DIGESTS,
    ("ostree: ostree (tampered upstream)", "on_demand"): _OSTREE_DIGESTS,
    ("file: zckdl", "immediate"): _SEVERAL_RANGES,
    ("file: zckdl", "on_demand"): _SEVERAL_RANGES,
}


@dataclass
class Row:
    check: str  # e.g. "rpm: dnf"
    policy: str
    app: str
    outcome: drivers.Outcome
    note: str = ""


def _content(stack: stacks.Layout, base_path: str) -> str:
    return f"{stack.origin}{stacks.PREFIX}{base_path}/"


def _expected(one: plugins.Served, root: str) -> dict[str, str]:
    """The upstream's package files (name → sha256), what a client must end up with
    (ostree: the commit and the file in its tree; container: the manifest digest and the
    file in the layer)."""
    folder = os.path.join(root, "www", one.plugin, one.policy)
    if one.plugin == "ostree":
        return _ostree_expected(one, folder)
    if one.plugin == "container":
        return _image_expected(os.path.join(root, "oci", one.policy))
    patterns = {"rpm": ("*.rpm",), "deb": ("pool/*/*.deb",), "python": ("**/*.whl",),
                "npm": ("**/*.tgz",), "gem": ("gems/*.gem",),
                "file": ("big.bin", "primary.xml.zck"),
                "maven": ("**/*.jar", "**/*.pom"), "ansible": ("*.tar.gz",)}
    found: dict[str, str] = {}
    for pattern in patterns.get(one.plugin, ()):
        for path in glob.glob(os.path.join(folder, pattern), recursive=True):
            found[os.path.basename(path)] = drivers.sha256(path)
    return found


#: The file the ostree and container fixtures put in their tree (conformance/fixtures).
def _tree_file(one: plugins.Served) -> str:
    return (f"usr/share/{one.upstream.package}/README" if one.plugin == "ostree"
            else "hello/README")


def _ostree_expected(one: plugins.Served, repo: str) -> dict[str, str]:
    ref, path = one.upstream.version, _tree_file(one)
    commit = subprocess.run(["ostree", f"--repo={repo}", "rev-parse", ref],
                            capture_output=True, text=True, check=True).stdout.strip()
    data = subprocess.run(["ostree", f"--repo={repo}", "cat", ref, f"/{path}"],
                          capture_output=True, check=True).stdout
    return {"commit": commit, path: hashlib.sha256(data).hexdigest()}


def _image_expected(layout: str) -> dict[str, str]:
    """The OCI layout's manifest digest and the sha256 of hello/README in its layer."""

    def blob(digest: str) -> bytes:
        with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as source:
            return source.read()

    with open(os.path.join(layout, "index.json")) as source:
        digest = json.load(source)["manifests"][0]["digest"]
    (layer,) = json.loads(blob(digest))["layers"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as tar:
        member = tar.extractfile("hello/README")
        readme = member.read() if member else b""
    return {"manifest": digest, "hello/README": hashlib.sha256(readme).hexdigest()}


def _npm_integrity(expected: dict[str, str], root: str, one: plugins.Served) -> dict[str, str]:
    import base64

    out = {}
    for path in glob.glob(os.path.join(root, "www", "npm", one.policy, "**", "*.tgz"),
                          recursive=True):
        with open(path, "rb") as handle:
            digest = hashlib.sha512(handle.read()).digest()
        out[os.path.basename(path)] = "sha512-" + base64.b64encode(digest).decode()
    return out


def run_clients(one: plugins.Served, stack: stacks.Layout, work: str, root: str,
                full: bool = True) -> list[drivers.Outcome]:
    """Every client of ``one``'s plugin against its distribution (``root``: the
    fixtures' folder, for the digests a client must end up with; ``full``: podman
    beside skopeo too)."""
    package = one.upstream.package
    if one.plugin == "rpm":
        return [drivers.dnf(_content(stack, one.base_path), package, work),
                drivers.dnf(_content(stack, one.base_path), package, work, config_repo=True)]
    if one.plugin == "deb":
        from conformance.fixtures import deb

        return [drivers.apt(_content(stack, one.base_path), deb.DISTRIBUTION, deb.COMPONENT,
                            package, work)]
    if one.plugin == "python":
        return [drivers.pip(f"{stack.origin}/pypi/{one.base_path}/simple/", package, work)]
    if one.plugin == "npm":
        return [drivers.npm(_content(stack, one.base_path), package, work)]
    if one.plugin == "gem":
        return [drivers.gem(_content(stack, one.base_path), package, work)]
    if one.plugin == "container":
        host = stack.origin.removeprefix("http://")
        reference = f"{host}/{one.base_path}:{one.upstream.version}"
        return [drivers.skopeo(reference, work)] + (
            [drivers.podman(reference, _tree_file(one), work)] if full else [])
    if one.plugin == "maven":
        from conformance.fixtures import maven

        return [drivers.mvn(_content(stack, one.base_path), maven.GROUP, package,
                            one.upstream.version, work)]
    if one.plugin == "ansible":
        return [drivers.ansible_galaxy(fixtures.tool("ansible-galaxy"),
                                       f"{stack.origin}/pulp_ansible/galaxy/{one.base_path}/",
                                       package, one.upstream.version, stacks.ADMIN, work)]
    if one.plugin == "ostree":
        return [drivers.ostree(_content(stack, one.base_path), one.upstream.version,
                               _tree_file(one), work)]
    if one.plugin == "file":
        from conformance.fixtures import file

        url = f"{_content(stack, one.base_path)}{package}"
        expected = _expected(one, root)
        folder = os.path.join(root, "www", one.plugin, one.policy)
        return [drivers.curl_resume(url, work, expected[package]),
                drivers.aria2c(url, work, expected[package]),
                drivers.zckdl(f"{_content(stack, one.base_path)}{file.ZCK}",
                              file.seed_path(folder), work, expected[file.ZCK])]
    return []


def check_files(outcome: drivers.Outcome, one: plugins.Served, root: str) -> drivers.Outcome:
    """A passing client must have got exactly the upstream's package bytes."""
    if not outcome.ok or outcome.client in ("skopeo", "curl -C -", "aria2c -x4", "zckdl"):
        return outcome  # skopeo checked every blob against its digest, the range clients ours
    expected = (_npm_integrity({}, root, one) if one.plugin == "npm"
                else _expected(one, root))
    wrong = {name: got for name, got in outcome.files.items() if expected.get(name) != got}
    if not outcome.files or wrong:
        outcome.ok = False
        outcome.detail = (f"got {outcome.files or 'no file'}, upstream has {expected}")
    else:
        outcome.detail += "; bytes = upstream's"
    return outcome


@contextlib.contextmanager
def tampered(one: plugins.Served, root: str) -> Iterator[list[str]]:
    """The upstream's package files with one byte flipped (same size), restored after.
    Yields their paths (none when the plugin has no static package file to tamper)."""
    files = [p for p in glob.glob(os.path.join(root, "www", one.plugin, one.policy, "**", "*"),
                                  recursive=True)
             if os.path.isfile(p) and p.endswith(TAMPERED)]
    saved = {}
    for path in files:
        with open(path, "rb") as handle:
            saved[path] = handle.read()
        data = bytearray(saved[path])
        data[len(data) // 2] ^= 0xFF
        with open(path, "wb") as handle:
            handle.write(bytes(data))
    try:
        yield files
    finally:
        for path, data in saved.items():
            with open(path, "wb") as handle:
                handle.write(data)


def _log_end(path: str) -> int:
    """Where an nginx access log ends now (0 when there is none yet)."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


#: A request line in nginx's ``combined`` log format: its method and target.
_REQUEST_LINE = re.compile(r'"(GET|HEAD) (\S+) HTTP/[0-9.]+"')


def _logged_gets(path: str, since: int, until: int | None = None) -> set[str]:
    """The paths (query removed) of the ``GET`` requests nginx logged in ``path`` after
    byte ``since`` (and before byte ``until``; None: to the end)."""
    try:
        with open(path, "rb") as log:
            log.seek(since)
            text = log.read(-1 if until is None else max(until - since, 0)).decode("latin-1")
    except FileNotFoundError:
        return set()
    return {m.group(2).split("?", 1)[0] for m in _REQUEST_LINE.finditer(text)
            if m.group(1) == "GET"}


def tamper_reached(one: plugins.Served, stack: stacks.Layout, root: str, files: list[str],
                   front_since: int, upstream_since: int, front_until: int | None = None,
                   upstream_until: int | None = None) -> tuple[bool, str]:
    """Whether a tampered-upstream check exercised the tampering: the client asked the
    front door (the stack's nginx) for a tampered file, and the app fetched a tampered file
    from the upstream (the fixtures' nginx), both after the ``since`` marks and before the
    ``until`` marks (byte offsets in the two access logs; None: to the end). Without both,
    a client that failed for another reason (an error before the package, a cached copy)
    would pass as having rejected tampered bytes. The ``until`` marks keep out what the
    run asks itself once the client has run (``verdicts``' probe asks the front door for
    a pull-through file, and the app fetches it from the upstream again)."""
    asked = {f"{stacks.PREFIX}{one.base_path}/{path}" for path in one.cold
             if path.endswith(TAMPERED)}
    front = _logged_gets(stack.path("logs", "nginx-access.log"), front_since,
                         front_until) & asked
    upstream = {"/" + os.path.relpath(f, os.path.join(root, "www")) for f in files}
    fetched = _logged_gets(os.path.join(root, "nginx-access.log"), upstream_since,
                           upstream_until) & upstream
    detail = (f"; the client asked the front door for {len(front)} of {len(asked)} tampered "
              f"file(s), the app fetched {len(fetched)} of {len(upstream)} from the upstream")
    if not front:
        detail += " (the client NEVER ASKED for a tampered file)"
    if not fetched:
        detail += " (NO tampered file was fetched from the upstream)"
    return bool(front and fetched), detail


def _versions() -> dict[str, str]:
    def first_line(*argv: str, line: int = 0) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  check=False)
        except OSError:
            return "missing"
        text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout.strip() or done.stderr.strip())
        lines = text.splitlines()
        return lines[line].strip() if len(lines) > line else "?"

    return {"dnf": first_line("dnf", "--version"), "rpm": first_line("rpm", "--version"),
            "apt": first_line("apt-get", "--version"),
            "pip": first_line("/usr/bin/python3", "-m", "pip", "--version"),
            "skopeo": first_line("skopeo", "--version"), "npm": first_line("npm", "--version"),
            "gem": first_line("gem", "--version"), "podman": first_line("podman", "--version"),
            "mvn": first_line("mvn", "-B", "--version"),
            "ansible-galaxy": first_line(fixtures.tool("ansible-galaxy"), "--version"),
            "ostree": " ".join(first_line("ostree", "--version", line=n) for n in (0, 1)),
            "curl": first_line("curl", "--version"), "aria2c": first_line("aria2c", "--version"),
            "zckdl": first_line("zckdl", "--version")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=os.path.join(stacks.ROOT, "clients", "report.md"))
    parser.add_argument("--slice", choices=("full", "ci"), default="full")
    parser.add_argument("--plugins", help=f"a comma-separated subset of {','.join(PLUGINS)} "
                        "(instead of the slice)")
    args = parser.parse_args()
    chosen = CI_PLUGINS if args.slice == "ci" else PLUGINS
    if args.plugins:
        chosen = tuple(args.plugins.split(","))
        if unknown := set(chosen) - set(PLUGINS):
            parser.error(f"unknown plugins: {', '.join(sorted(unknown))}")
    stack = stacks.layout()
    began = time.monotonic()
    started = stacks.ensure_up(stack)
    unique = uuid.uuid4().hex[:6]
    work = stack.path("clients")
    shutil.rmtree(work, ignore_errors=True)
    rows: list[Row] = []
    root = stack.path("fixtures")
    try:
        with fixtures.serve(root, stack.nginx + plugins.FIXTURE_OFFSET["http"],
                            stack.nginx + plugins.FIXTURE_OFFSET["registry"],
                            unique) as upstreams:
            api = plugins.PulpApi(stack.origin)
            served = plugins.create(api, {key: upstream for key, upstream in upstreams.items()
                                          if key in CLIENT_UPSTREAMS or (key[0] not in
                                          ("ansible", "container", "maven") and key[1] in
                                          ("immediate", "on_demand"))}, list(chosen), unique)
            plugins.discover(served)
            for app in APPS:
                stacks.switch(stack, app)
                # Each app answers on its own: on-demand content on-demand again, no
                # cache entries from the other app.
                _make_cold(api, served)
                for one in served:
                    folder = os.path.join(work, app, one.plugin, one.policy)
                    os.makedirs(folder, exist_ok=True)
                    note = ""
                    for outcome in run_clients(one, stack, folder, root,
                                               full=args.slice == "full"):
                        outcome = check_files(outcome, one, root)
                        if one.policy in FETCHED and outcome.ok and one.saves:
                            # What the client fetched must now be stored (the next
                            # client is served from storage).
                            kept = plugins.settle(set(one.saves))
                            note = (f"saved by the first fetch ({len(kept)} of "
                                    f"{len(one.saves)})")
                            if kept != one.saves:
                                outcome.ok = False
                                note = "NOT " + note
                        rows.append(Row(f"{one.plugin}: {outcome.client}", one.policy, app,
                                        outcome, note))
                        note = ""
                # Integrity: reclaimed on-demand content, the upstream tampered.
                _make_cold(api, served)
                for one in served:
                    if one.policy not in FETCHED:
                        continue
                    with tampered(one, root) as files:
                        if not files:
                            continue
                        folder = os.path.join(work, app, one.plugin, "tampered")
                        os.makedirs(folder, exist_ok=True)
                        watched = {key for path, key in one.cold.items()
                                   if path.endswith(TAMPERED)}
                        # A failure left by an earlier column or run (the same content
                        # unit, another remote's remote artifact) is neither this app's
                        # verdict nor a reason for it to refuse: forget it, and count
                        # only failures recorded from now on.
                        _cool_down(one, watched)
                        since = _database_now()
                        front_since = _log_end(stack.path("logs", "nginx-access.log"))
                        upstream_since = _log_end(os.path.join(root, "nginx-access.log"))
                        for outcome in run_clients(one, stack, folder, root)[:1]:
                            # The client's requests are all logged once it has exited
                            # (nginx logs a request before its client sees the end):
                            # the verdict's probes below must not pass for the client's.
                            front_until = _log_end(stack.path("logs", "nginx-access.log"))
                            upstream_until = _log_end(os.path.join(root, "nginx-access.log"))
                            probes = {key: f"{_content(stack, one.base_path)}{path}"
                                      for path, key in one.cold.items()
                                      if path.endswith(TAMPERED) and key.startswith("url:")}
                            # Only the tampered files must not be saved: what else the
                            # client fetched (gem: the untouched gemspec) is genuine. An
                            # app may decide just after its answer (ours does): wait for
                            # its verdict on each tampered download.
                            kept, pending = verdicts(watched, probes, since)
                            # Without probes, the app's fetch may end after the client
                            # left (a client that hangs up early): read the upstream's
                            # log to its end, after the verdict. With them, the fetch the
                            # client caused must be logged by now (its cut comes only
                            # after the whole file was fetched); a later one may be the
                            # probe's.
                            reached, how = tamper_reached(
                                one, stack, root, files, front_since, upstream_since,
                                front_until, upstream_until if probes else None)
                            rejected = not outcome.ok
                            outcome.ok = rejected and not kept and not pending and reached
                            outcome.detail = (
                                ("rejected by the client: " if rejected
                                 else "ACCEPTED tampered bytes: ") + outcome.detail
                                + ("" if not kept else f"; SAVED {sorted(kept)}")
                                + ("" if not pending else
                                   f"; NO VERDICT within {VERDICT_DEADLINE:.0f} s on "
                                   f"{sorted(pending)}") + how)
                            rows.append(Row(f"{one.plugin}: {outcome.client} (tampered "
                                            "upstream)", one.policy, app, outcome))
                    _forget_cache(served)
                    _cool_down(one, {key for key in one.cold.values()})
    finally:
        if started:
            stacks.down(stack)
    seconds = time.monotonic() - began
    chosen_by = f"--plugins {args.plugins}" if args.plugins else f"--slice {args.slice}"
    failures = write_report(args.report, rows, seconds, chosen_by)
    print(f"clients: {len(rows)} rows, {failures} failing; report {args.report}")
    raise SystemExit(1 if failures else 0)


def verdicts(keys: set[str], probes: dict[str, str] | None = None,
             since: datetime.datetime | None = None) -> tuple[set[str], set[str]]:
    """Wait until the app has recorded a verdict on each of these downloads (content
    artifact pks, or ``url:<upstream url>`` for pull-through content): its artifact saved,
    or a remote artifact of it marked failed (``failed_at``, which both apps set when a
    download fails its digest check, pulpcore's ``REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN``).
    First-time pull-through content has no remote artifact row to mark (pulpcore's
    ``_stream_remote_artifact`` skips it; ours too), so its verdict is asked of the app
    (``probes``: key → the content URL): a refusing app answers the next request with a
    cut or an error (it fetches and refuses again), one that saved the file answers it
    whole from storage. Only failures recorded at or after ``since`` (the database's
    clock) count. Returns (saved, still undecided after ``VERDICT_DEADLINE`` seconds)."""
    from pulpcore.app.models import RemoteArtifact

    probed: set[str] = set()

    def refused() -> set[str]:
        failed = RemoteArtifact.objects.filter(failed_at__isnull=False)
        if since is not None:
            failed = failed.filter(failed_at__gte=since)
        return ({str(pk) for pk in failed.filter(
                    content_artifact_id__in=[k for k in keys if not k.startswith("url:")]
                ).values_list("content_artifact_id", flat=True)}
                | {f"url:{url}" for url in failed.filter(
                    url__in=[k[4:] for k in keys if k.startswith("url:")]
                ).values_list("url", flat=True)})

    deadline = time.monotonic() + VERDICT_DEADLINE
    while True:
        kept = plugins.saved(keys)
        pending = keys - kept - refused() - probed
        for key in pending & set(probes or {}):
            if key not in probed and _refuses((probes or {})[key]):
                probed.add(key)  # saved after all? ``kept`` says so on the next round
                pending.discard(key)
        if not pending or time.monotonic() > deadline:
            return plugins.saved(keys), pending
        time.sleep(0.2)  # a row written by another process: nothing to wait on but the row


def _refuses(url: str) -> bool:
    """Whether the app refuses ``url``: anything but a whole ``200`` (a cut shows as an
    incomplete chunked body)."""
    import httpx

    try:
        return httpx.get(url, timeout=120).status_code != 200
    except httpx.TransportError:  # the body cut short: the app refused the bytes
        return True


def _make_cold(api: plugins.PulpApi, served: list[plugins.Served]) -> None:
    """What the apps fetch from upstreams not fetched yet: on-demand content reclaimed,
    pull-through content removed (the orphan cleanup), the response cache emptied."""
    plugins.unsave(key for one in served for key in one.saves)
    if any(one.policy == "pull_through" for one in served):
        plugins.forget_pulled(api)
    _forget_cache(served)


def _cool_down(one: plugins.Served, keys: set[str]) -> None:
    """Forget failed downloads of this remote and of these downloads (content artifact
    pks, ``url:<upstream url>``), whichever remote's remote artifact holds them (the same
    content unit is shared by every run on one database): both apps refuse a remote
    artifact during ``REMOTE_CONTENT_FETCH_FAILURE_COOLDOWN`` after a failure, and the
    next column must not inherit that (an operator would wait it out)."""
    from django.db.models import Q
    from pulpcore.app.models import RemoteArtifact

    RemoteArtifact.objects.filter(
        Q(remote_id=one.remote.rstrip("/").split("/")[-1])
        | Q(content_artifact_id__in=[k for k in keys if not k.startswith("url:")])
        | Q(url__in=[k[4:] for k in keys if k.startswith("url:")])
    ).update(failed_at=None)


def _database_now() -> datetime.datetime:
    """The database's clock (``failed_at`` is written by the apps on this same machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        now: datetime.datetime = cursor.fetchone()[0]
    return now


def _forget_cache(served: list[plugins.Served]) -> None:
    import redis
    from django.conf import settings
    from pulpcore.app.util import cache_key

    client = redis.Redis(host=settings.REDIS_HOST, port=settings.REDIS_PORT,
                         db=settings.REDIS_DB)
    client.delete(*cache_key([one.base_path for one in served]))


def write_report(path: str, rows: list[Row], seconds: float, chosen_by: str) -> int:
    """Write the report; the number of failures that count (ours, or unexplained)."""
    commit = subprocess.run(["git", "-C", stacks.ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", stacks.ROOT, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True,
                           check=False).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failures = 0
    table: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        table.setdefault((row.check, row.policy), {})[row.app] = row
    lines = ["# Real package clients against Pulp's content",
             "",
             f"Generated by `make clients` (`python -m clients.run {chosen_by}`) at "
             f"commit `{commit}`{' (with uncommitted changes)' if dirty else ''} on {now}, "
             f"in {seconds:.0f} s. Every client fetched through the stack's nginx (Pulp's "
             "proxy layout), content routed to the app of the column. Source and method: "
             "`clients/run.py`.", "",
             "| Check | Policy | pulp-content-asgi | pulpcore-content | Detail (ours / theirs) |",
             "|---|---|---|---|---|"]
    for (check, policy), by_app in table.items():
        cells = []
        for app in APPS:
            row = by_app.get(app)
            if row is None:
                cells.append("—")
                continue
            mark = "pass" if row.outcome.ok else "**FAIL**"
            if not row.outcome.ok:
                why = EXPLAINED.get((check, policy)) if app == "legacy" else None
                bug = PLUGIN_BUGS.get((check, policy))
                if bug is not None:
                    mark = f"fail (plugin bug: {bug})"
                elif why is not None:
                    mark = f"fail (explained: {why})"
                else:
                    failures += 1
            cells.append(f"{mark} ({row.outcome.seconds:.1f} s)")
        details = " / ".join(
            (f"{r.outcome.detail}{'; ' + r.note if r.note else ''}".replace("|", "\\|")
             if (r := by_app.get(app)) else "—") for app in APPS)
        lines.append(f"| {check} | {policy} | {cells[0]} | {cells[1]} | {details} |")
    lines += ["", "## Client versions", ""]
    lines += [f"- {name}: {version}" for name, version in _versions().items()]
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    return failures


if __name__ == "__main__":
    main()
