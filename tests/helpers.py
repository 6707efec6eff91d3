"""What the test modules share, in one place: paths, servers, URLs, ASGI scopes, waiting,
on-demand repositories and Prometheus samples. Test modules import from here, never from
each other or from conftest.py.

Only the standard library and pytest are imported at module level, so the fast tier
(``tests/http``) can import this without Django being set up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where a test session keeps its settings, media and logs; conftest.py empties it at the
# start of a session. `make adversarial` runs lanes side by side, each with its own
# (tests/adversarial_lanes.py).
TEST_ROOT = os.environ.get("CONTENT_ASGI_TEST_ROOT") or os.path.join(ROOT, ".dev", "test")
BIN = os.path.dirname(sys.executable)
# One database per checkout, created afresh for every run: the machine's PostgreSQL is
# shared by every clone (CI runs in another folder), and artifacts must match the files
# under this checkout's .dev/test/media.
DBNAME = os.environ.get(
    "CONTENT_ASGI_TEST_DB",
    "pulp_content_asgi_test_" + hashlib.sha1(ROOT.encode()).hexdigest()[:8],
)
METRICS = "/pulp/content-asgi/metrics/"
# How long a test waits for a condition it polls (a busy 2-core machine can be slow; a
# condition that holds returns at once, so the deadline costs nothing when all is well).
DEADLINE = 60.0


def unique_name() -> str:
    """A fresh name for repositories, base paths, remotes and buckets."""
    return uuid.uuid4().hex[:10]


def wait_for(predicate: Callable[[], Any], timeout: float = DEADLINE,
             interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- servers -------------------------------------------------------------------------

def start_server(argv: list[str], env: dict[str, str] | None = None,
                 probe: str = "/pulp/content/", timeout: float = DEADLINE) -> Any:
    """Run ``argv`` (``{port}`` is replaced) under the test settings; wait up to
    ``timeout`` seconds for ``probe``."""
    from pulp_content_asgi.devtools import processes

    return processes.start(argv, TEST_ROOT, env, probe=probe, cwd=ROOT, timeout=timeout)


def stop_server(server: Any) -> int:
    """SIGTERM the server's process group (SIGKILL after 20 s); its exit status."""
    from pulp_content_asgi.devtools import processes

    return processes.stop(server)


def start_nginx(name: str, http: Callable[[int], str]) -> tuple[Any, int]:
    """nginx from the system, in a folder of its own under TEST_ROOT (``nginx-<name>-<port>``),
    with ``http(port)`` as the body of its ``http`` block (the server block listening on
    ``port``); returns the running process (``devtools.processes.stop`` it) and the port."""
    from pulp_content_asgi.devtools.processes import free_port, start

    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is missing: dev/bench-tools.sh installs it"
    port = free_port()
    state = os.path.join(TEST_ROOT, f"nginx-{name}-{port}")
    os.makedirs(os.path.join(state, "tmp"), exist_ok=True)
    conf = os.path.join(state, "nginx.conf")
    with open(conf, "w") as out:
        out.write(f"daemon off; pid {state}/pid; error_log {state}/error.log;\n"
                  "events {}\n"
                  f"http {{ access_log off; client_body_temp_path {state}/tmp; "
                  f"proxy_temp_path {state}/tmp;\n{http(port)}\n}}\n")
    return start([binary, "-c", conf], state, port=port), port


def content_app(server: str = "granian", env: dict[str, str] | None = None,
                workers: int = 1, probe: str = "/pulp/content/",
                extra: list[str] | None = None, timeout: float = DEADLINE) -> Any:
    """``pulp-content-asgi`` on a free loopback port, answering ``probe`` (waited for up to
    ``timeout`` seconds)."""
    argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}", "--server",
            server, "--workers", str(workers), "--log-level", "warning", *(extra or [])]
    return start_server(argv, env, probe=probe, timeout=timeout)


LEGACY_ROUTES = "/pulp/legacy-test/"


def legacy_content_app(env: dict[str, str] | None = None) -> Any:
    """pulpcore-content with a test plugin's aiohttp routes under ``LEGACY_ROUTES``
    (tests/legacy_origin.py), one worker: its stream events live in that worker."""
    argv = [sys.executable, "-m", "tests.legacy_origin", "--bind", "127.0.0.1:{port}",
            "--workers", "1", "--no-control-socket"]
    return start_server(argv, env, probe=LEGACY_ROUTES + "events")


def metered_env(directory: str, **extra: str) -> dict[str, str]:
    """Environment of a server that shares its Prometheus counts in ``directory``."""
    return {"PULP_CONTENT_ASGI_PROMETHEUS_ENABLED": "true",
            "PULP_CONTENT_ASGI_PROMETHEUS_DIR": directory, **extra}


def closed_by_server(sock: Any, within: float, trickle: bytes | None = None) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds,
    reading what it sends meanwhile; ``trickle`` is sent each time a second passes with
    nothing read (a client dribbling its headers). ``sock`` needs a 1 s timeout."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            if trickle is not None:
                sock.sendall(trickle)
        except ConnectionResetError:
            return True
    return False


def raw_get(server: Any, target: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """GET ``target`` (path and query; characters above 0x7f go as single latin-1 bytes)
    sent exactly as given, byte for byte (httpx and curl normalise some of it): status,
    lower-cased headers, body."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(server.base)
    lines = [f"GET {target} HTTP/1.1", f"Host: {where.netloc}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = http.client.HTTPResponse(sock)
        response.begin()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())


def follow_listing(client_get: Callable[[str], Any], page_url: str) -> dict[str, bytes]:
    """Every entry of a listing, fetched through its href as a browser resolves it; a
    directory is listed in turn. Name (relative to ``page_url``) -> body."""
    from html.parser import HTMLParser
    from urllib.parse import urljoin

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.hrefs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            href = dict(attrs).get("href")
            if tag == "a" and href is not None and href != "../":
                self.hrefs.append(href)

    page = client_get(page_url)
    assert page.status_code == 200, page_url
    links = Links()
    links.feed(page.text)
    found: dict[str, bytes] = {}
    for link in links.hrefs:
        target = urljoin(page_url, link)
        if target.endswith("/"):
            below = follow_listing(client_get, target)
            found.update({f"{link[2:]}{k}": v for k, v in below.items()})
        else:
            response = client_get(target)
            assert response.status_code == 200, target
            found[link[2:]] = response.content
    return found


def url(server: Any, distribution: Any, path: str = "") -> str:
    """The URL of ``path`` below ``distribution`` on ``server`` (no domains)."""
    return server.url(f"/pulp/content/{distribution.base_path}/{path}")


# --- object storage ------------------------------------------------------------------

MOTO = os.path.join(os.path.dirname(sys.executable), "moto_server")


def s3_domain(endpoint: str, redirect: bool) -> Any:
    """A Domain in a new bucket of the S3 server at ``endpoint`` (moto, test credentials)."""
    import boto3
    from pulpcore.app.models import Domain

    bucket = f"pulp-{unique_name()}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1").create_bucket(
        Bucket=bucket)
    return Domain.objects.create(
        name=f"s3-{bucket}", storage_class="storages.backends.s3boto3.S3Boto3Storage",
        storage_settings={"access_key": "test", "secret_key": "test", "bucket_name": bucket,
                          "endpoint_url": endpoint, "region_name": "us-east-1",
                          "signature_version": "s3v4", "addressing_style": "path"},
        redirect_to_object_storage=redirect)


def s3_signed_for(location: str, method: str) -> bool:
    """Whether ``location`` carries a valid S3 SigV4 query signature for ``method``
    (botocore recomputes it from the URL alone, with the test credentials)."""
    import hmac
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(location)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    unsigned = urlunsplit(parts._replace(query=urlencode(
        [(k, v) for k, v in pairs if k != "X-Amz-Signature"], quote_via=quote)))
    request = AWSRequest(method=method, url=unsigned)
    request.context["timestamp"] = query["X-Amz-Date"]
    region = query["X-Amz-Credential"].split("/")[2]
    auth = S3SigV4QueryAuth(Credentials("test", "test"), "s3", region,
                            expires=int(query["X-Amz-Expires"]))
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    return hmac.compare_digest(expected, query["X-Amz-Signature"])


# --- Redis ---------------------------------------------------------------------------

class PrivateRedis:
    """A redis-server on a free loopback port that the tests may stop and restart."""

    def __init__(self) -> None:
        from pulp_content_asgi.devtools.processes import free_port

        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: self.cli("ping").strip() == "PONG", DEADLINE):
            raise RuntimeError("redis-server did not start")

    def stop(self, kill: bool = False) -> None:
        """Stop it (SIGTERM), or with ``kill`` crash it (SIGKILL: connections reset)."""
        if self.process is not None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True).stdout


# --- a private PostgreSQL --------------------------------------------------------------

def template_dump() -> str:
    """A ``pg_dump`` (custom format) of the checkout's migrated template
    (``devtools/migrated.py``, made before the first test that needs the database), written
    once per run under ``TEST_ROOT``: what :func:`migrated_cluster` restores."""
    from pulp_content_asgi.devtools import databases, migrated
    from pulp_content_asgi.devtools.pgcluster import BINDIR

    path = os.path.join(TEST_ROOT, "template.dump")
    if not os.path.exists(path):
        template = databases.name(f"template_{migrated.fingerprint()}")
        partial = f"{path}.{os.getpid()}"
        subprocess.run([os.path.join(BINDIR or "", "pg_dump"), "--format=custom",
                        "--file", partial, template], check=True, capture_output=True)
        os.replace(partial, path)
    return path


def migrated_cluster(options: tuple[str, ...] = ()) -> tuple[Any, dict[str, str]]:
    """A private PostgreSQL cluster (devtools.pgcluster, with server ``options``) with a
    migrated ``pulp`` database and a settings file of its own (media and working
    directory under the cluster's folder): (cluster, the environment pointing at both).
    The database is the checkout's migrated template restored (:func:`template_dump`):
    seconds, where migrating it took minutes. The caller stops and removes the cluster.
    """
    from pulp_content_asgi.devtools.pgcluster import BINDIR, Cluster

    assert BINDIR, "PostgreSQL's server binaries are missing: dev/database.sh installs them"
    dump = template_dump()
    pg = Cluster(options)
    pg.init()
    pg.start()
    env = {**os.environ, **pg.env()}
    settings_root = os.path.join(pg.root, "pulp")
    script = ("from pulp_content_asgi.devtools import settings as s\n"
              "s.ensure_database('pulp')\n"
              f"print(s.write({settings_root!r}, 'pulp'))\n")
    env["PULP_SETTINGS"] = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                          capture_output=True, text=True).stdout.strip()
    # One transaction, without waiting for the WAL flush of each statement.
    subprocess.run([os.path.join(BINDIR, "pg_restore"), "--single-transaction",
                    "--no-owner", "--dbname", "pulp", dump], check=True, capture_output=True,
                   env={**env, "PGOPTIONS": "-c synchronous_commit=off"})
    return pg, env


def cluster_server_env(env: dict[str, str], **settings: str) -> dict[str, str]:
    """A server's environment on a :func:`migrated_cluster`, plus ``PULP_<name>`` settings."""
    chosen = {k: env[k] for k in ("PULP_SETTINGS", "PGHOST", "PGPORT")}
    return {**chosen, **{f"PULP_{k}": v for k, v in settings.items()}}


# --- ASGI ----------------------------------------------------------------------------

def scope(path: str, method: str = "GET", headers: dict[str, str] | None = None,
          query: str = "", extensions: dict | None = None) -> dict:
    """An ASGI HTTP scope for ``path`` as a server on 127.0.0.1:24816 would pass it."""
    return {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 24816), "client": ("127.0.0.1", 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "extensions": extensions or {},
    }


async def asgi_call(app: Any, request_scope: dict,
                    on_send: Callable[[dict], Any] | None = None) -> list[dict]:
    """Call ``app`` for one request; the messages it sent, in order.

    ``receive`` answers ``http.disconnect`` once the app returned, or as soon as
    ``on_send`` (called with each message) returns True: the client leaves then.
    """
    import asyncio

    sent: list[dict] = []
    gone = asyncio.Event()

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if on_send is not None and on_send(message):
            gone.set()
            # Hold this send for a few loop turns (not seconds): the app's disconnect
            # watcher wakes, finishes and has the copy cancelled in three, all before
            # the copy could send again. A count of turns does not depend on load.
            for _ in range(10):
                await asyncio.sleep(0)

    await app(request_scope, receive, send)
    gone.set()
    return sent


# --- on-demand content -----------------------------------------------------------------

def on_demand(upstream: Any, files: dict[str, bytes], policy: str = "on_demand",
              extra_remote: Any = None, base: str | None = None) -> tuple[Any, str, Any]:
    """A published repository whose files exist only upstream (the remote's URLs).

    Returns (distribution, the files' prefix on ``upstream``, repository).
    """
    from pulp_file.app.models import FileRemote
    from pulpcore.app.models import ContentArtifact, RemoteArtifact

    from pulp_content_asgi.devtools import data

    u = unique_name()
    prefix = f"{u}/"
    remote = FileRemote.objects.create(name=f"remote-{u}", url=upstream.url(prefix),
                                       policy=policy)
    for name, blob in files.items():
        upstream.files[prefix + name] = blob
    repo = data.repository(f"od-{u}", {n: data.OnDemand(upstream.url(prefix + n), b)
                                       for n, b in files.items()}, remote=remote)
    if extra_remote is not None:
        second = FileRemote.objects.create(name=f"backup-{u}", url=extra_remote.url(prefix),
                                           policy=policy)
        for name, blob in files.items():
            extra_remote.files[prefix + name] = blob
            ca = ContentArtifact.objects.get(relative_path=name,
                                             content__in=repo.latest_version().content)
            RemoteArtifact.objects.create(content_artifact=ca, remote=second,
                                          url=extra_remote.url(prefix + name), size=len(blob),
                                          sha256=hashlib.sha256(blob).hexdigest())
    distribution = data.distribute(base or f"od-{u}",
                                   publication=data.publish(repo.latest_version()))
    return distribution, prefix, repo


def content_artifact(repo: Any, name: str) -> Any:
    """The ContentArtifact of ``name`` in the repository's latest version (fresh)."""
    from pulpcore.app.models import ContentArtifact

    return ContentArtifact.objects.select_related("artifact").get(
        relative_path=name, content__in=repo.latest_version().content)


def overlapping_distribution(base_path: str, **fields: object) -> Any:
    """A distribution whose base path overlaps an existing one, as an installation upgraded
    from before pulpcore's overlap trigger (migration core.0157) can hold: the trigger
    checks new rows only, so it is bypassed here for this one insert."""
    from django.db import connection, transaction

    from pulp_content_asgi.devtools import data

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        return data.distribute(base_path, **fields)


def unit_at(model: Any, relative_path: str, blob: bytes, **fields: object) -> Any:
    """A stored content unit of ``model`` whose one file is ``blob`` at ``relative_path``
    (``fields`` completes the unit: ``digest`` or ``sha256`` are filled in)."""
    from pulpcore.app.models import ContentArtifact

    from pulp_content_asgi.devtools import data

    artifact = data.artifact_from_bytes(blob)
    names = {f.name for f in model._meta.get_fields()}
    digest = {k: artifact.sha256 for k in ("digest", "sha256") if k in names}
    unit = model.objects.create(relative_path=relative_path, **digest, **fields)
    ContentArtifact.objects.create(content=unit, artifact=artifact, relative_path=relative_path)
    return unit


def also_in(version: Any, unit: Any, added_before: Any = None) -> None:
    """Put ``unit`` into ``version`` beside a unit at the same relative path, as a
    pulp_ostree re-sync leaves two ``summary`` files in one version (a version's own
    finalize would have removed one). ``added_before``: another unit of the version that
    this one joined the repository before (default: it joined last)."""
    from datetime import timedelta

    from pulpcore.app.models import RepositoryContent, RepositoryVersion

    joined = RepositoryContent.objects.create(repository=version.repository, content=unit,
                                              version_added=version)
    if added_before is not None:
        other = RepositoryContent.objects.get(repository=version.repository,
                                              content=added_before)
        RepositoryContent.objects.filter(pk=joined.pk).update(
            pulp_created=other.pulp_created - timedelta(seconds=1))
    current = RepositoryVersion.objects.get(pk=version.pk).content_ids
    RepositoryVersion.objects.filter(pk=version.pk).update(content_ids=[*current, unit.pk])


def distribution_in(domain: Any, files: dict[str, bytes], **fields: Any) -> Any:
    """A published distribution of ``files`` inside ``domain`` (``fields``: more of the
    distribution's, such as its ``content_guard``)."""
    from pulpcore.app.models import Domain
    from pulpcore.app.util import set_domain

    from pulp_content_asgi.devtools import data

    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        repo = data.repository(f"repo-{domain.name}", files)
        return data.distribute(f"dist-{domain.name}",
                               publication=data.publish(repo.latest_version()), **fields)
    finally:
        set_domain(default)


# --- Prometheus ------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent, as Prometheus counters start)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(server: Any) -> Samples:
    """The server's Prometheus endpoint, parsed (asserts a 200 exposition)."""
    import httpx

    response = httpx.get(server.url(METRICS), timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def per_worker(directory: str) -> dict[str, Samples]:
    """The samples each worker process recorded, read from its own multiprocess files."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    found: dict[str, Samples] = {}
    pids = {name.rsplit("_", 1)[1][:-3] for name in os.listdir(directory)
            if name.endswith(".db") and "_" in name}
    for pid in pids:
        alone = tempfile.mkdtemp()
        try:
            for name in os.listdir(directory):
                if name.endswith(f"_{pid}.db"):
                    shutil.copy(os.path.join(directory, name), alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            found[pid] = samples(generate_latest(registry).decode())
        finally:
            shutil.rmtree(alone)
    return found


# --- resolution in-process -------------------------------------------------------------

def resolve(path: str, headers: dict[str, str] | None = None, query: str = "",
            method: str = "GET") -> Any:
    """What the app decides for ``path`` (under CONTENT_PATH_PREFIX): a ``results``
    object from the resolver, called as the app calls it for one request (real DB)."""
    from django.conf import settings

    from pulp_content_asgi.plugin import results
    from pulp_content_asgi.plugin.request import ContentRequest
    from pulp_content_asgi.protocol import paths
    from pulp_content_asgi.resolution import dispatch

    full = settings.CONTENT_PATH_PREFIX + path
    target = paths.locate(full, settings.CONTENT_PATH_PREFIX, settings.DOMAIN_ENABLED)
    if isinstance(target, paths.AddSlash):
        return results.Redirect(target.location)
    assert isinstance(target, (paths.RootListing, paths.ContentPath)), target
    content = target.path if isinstance(target, paths.ContentPath) else ""
    request = ContentRequest(scope(full, method, headers, query), full, content, target.domain)
    return dispatch.resolve(request, target)


# --- plugin tasks ----------------------------------------------------------------------

def run_task(function: Callable[..., Any], *args: Any, domain: Any = None,
             **kwargs: Any) -> Any:
    """Run a plugin's task function here, synchronously, as a Pulp worker would: inside a
    Task's context (publications record it as their creator) and in a fresh directory
    under WORKING_DIRECTORY (tasks write their files into the current directory)."""
    from django.conf import settings
    from pulpcore.app.contexts import with_task_context
    from pulpcore.app.models import Domain, Task

    domain = domain or Domain.objects.get(name="default")
    task = Task.objects.create(name=f"{function.__module__}.{function.__name__}",
                               state="running", logging_cid=uuid.uuid4().hex,
                               pulp_domain=domain)
    os.makedirs(settings.WORKING_DIRECTORY, exist_ok=True)
    directory = tempfile.mkdtemp(dir=settings.WORKING_DIRECTORY, prefix="task-")
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        with with_task_context(task):
            result = function(*args, **kwargs)
    finally:
        os.chdir(cwd)
        shutil.rmtree(directory, ignore_errors=True)
    Task.objects.filter(pk=task.pk).update(state="completed")
    return result
