"""Plugin parity: content of the Pulp plugins, created through the real REST API of the
stack from local upstreams, asked of our app and of pulpcore-content.

    python -m conformance.parity_plugins [--report conformance/parity-plugins.md]
                                         [--plugins rpm,deb,python,npm,ostree,maven,
                                                    ansible,gem,container] [--domains]
                                         [--object-storage file,rpm,python,container]

Runs on the stack of ``make pulp-up`` (started here if it is not up). For each plugin it
builds local upstreams (conformance/fixtures/), then through pulpcore-api (HTTP, Basic
auth; the client bindings are not installed) creates what a user would: rpm, deb,
python, npm, ostree, gem and container a remote and a repository synced with the
``immediate`` and with the ``on_demand`` policy, and ``streamed`` where the plugin offers
it (rpm, deb, python, npm, gem, container: nothing may be saved for them, which the
database is searched for; ostree, maven, ansible and pulp_container's pull-through remote
are asked for one and must refuse it, ``STREAMED_REFUSED``); rpm and deb a
signed repository (conformance/signing.py); pull-through distributions on a remote for
maven (it has no sync), python, npm and container, and for python and npm also on a
``streamed`` remote (``pull_through_streamed``: nothing may be saved); ansible a
collection uploaded into a repository, one synced from a Galaxy v3 upstream and one
uploaded and signed (pulp_ansible's ``sign`` task; its signature, as the Galaxy API
lists it, is verified against ``MANIFEST.json`` of the tarball each app served). It
publishes where the plugin publishes (rpm, deb, python, gem) and distributes. The
requests of each distribution — listings, every file it serves, the package with HEAD,
ranges and conditionals, the plugin's own paths (``config.repo``, the PyPI JSON API, the
npm packument, …) — go to a pair of processes on the stack's database, our app and
pulpcore-content, each with its own Redis database (conformance/parity.py: raw requests,
the same ``Host``, independent answers), and are compared on status, the headers that
matter and the body.

Two passes: our app first, then pulpcore-content first. What the apps fetch from an
upstream (on-demand content, pull-through files) is fetched by whichever app asks
first, so each app meets it cold: before each app's "cold" requests (HEAD, then a
range, then a GET of every such file) the artifacts are dropped again as pulpcore's
reclaim task drops them (``unsave``; pull-through content by the orphan cleanup) and
the pair's cache entries for those distributions forgotten; whether the app saved the
artifact afterwards is compared too. The other requests then meet what the second app
saved.

Files clients reach through an API's redirect are asked that way: container blobs
through the registry API (a bearer token from ``/token/``, ``GET
/v2/<name>/blobs/<digest>``, the redirect's target ``/pulp/container/<name>/blobs/
sha256:<digest>?validate_token=…`` sent to both apps; every GET's body must hash to the
digest and name it in ``Docker-Content-Digest``), collections through the Galaxy API's
download URL. The same redirects are followed through nginx to the content app the
stack's front door serves (section "Front door"), and ``pulp-content-asgi plugins`` on
the stack must name no plugin that needs the legacy app.

``--domains``: the same on the ``DOMAIN_ENABLED`` stack (``make pulp-up
STACK_ARGS=--domains``), everything made through the API root of a domain of its own
(``/pulp/<domain>/api/v3/``) and asked under ``<prefix><domain>/<base path>/``, container
blobs under ``/pulp/container/<domain>/<path>/blobs/``, plus each plugin's first file in
the default and in an unknown domain → conformance/parity-plugins-domains.md. Besides,
file, rpm, python and container content (``immediate``, ``on_demand``) in two domains on
S3 (conformance/object_storage.py: moto's server on loopback), one with
``redirect_to_object_storage`` and one without: a redirect's ``Location`` is compared
without its signing time, its signature verified for the method, and followed, so what
the client ends with is compared too.

Every difference needs a rule (conformance/parity.py ``RULES``, and ``PLUGIN_RULES``
here); one that none explains is ``UNEXPLAINED`` and makes the command exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import html
import importlib.metadata
import json
import os
import posixpath
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httpx

from conformance import fixtures, signing
from conformance import object_storage as s3
from conformance import parity as base
from conformance import stack as stacks

PLUGINS = ("rpm", "deb", "python", "npm", "ostree", "maven", "ansible", "gem", "container")
#: Headers compared by value: parity.py's, and the ones the plugins' clients act on.
COMPARED = (*base.COMPARED, "docker-content-digest", "docker-distribution-api-version",
            "x-pypi-last-serial")
#: Ports after the parity pair (+4, +5): the static upstreams and the registry.
#: moto's S3 server (``--domains``) after them.
FIXTURE_OFFSET = {"http": 6, "registry": 7, "s3": 8}
API = "/pulp/api/v3/"


@dataclass(frozen=True)
class Kind:
    """A plugin's REST endpoints (``<kind>/<plugin>/<type>/``) and how it serves."""

    repository: str
    remote: str
    distribution: str
    #: the publication endpoint; None: the distribution serves the repository
    publication: str | None = None
    publication_fields: dict[str, object] = field(default_factory=dict)
    distribution_fields: dict[str, object] = field(default_factory=dict)
    #: the file a client downloads, by its path in the distribution
    package: str = r".*"


KINDS: dict[str, Kind] = {
    "rpm": Kind("rpm/rpm", "rpm/rpm", "rpm/rpm", "rpm/rpm",
                distribution_fields={"generate_repo_config": True}, package=r".*\.rpm"),
    "deb": Kind("deb/apt", "deb/apt", "deb/apt", "deb/apt",
                publication_fields={"structured": True}, package=r".*\.deb"),
    "python": Kind("python/python", "python/python", "python/pypi", "python/pypi",
                   package=r".*\.whl"),
    "npm": Kind("npm/npm", "npm/npm", "npm/npm", package=r".*\.tgz"),
    "ostree": Kind("ostree/ostree", "ostree/ostree", "ostree/ostree",
                   package=r"objects/.*\.filez"),
    # No repository, no sync: the distribution pulls through its remote.
    "maven": Kind("", "maven/maven", "maven/maven", package=r".*\.(jar|pom)"),
    # A collection uploaded through the API, and one synced from a Galaxy v3 upstream.
    "ansible": Kind("ansible/ansible", "ansible/collection", "ansible/ansible",
                    package=r".*\.tar\.gz"),
    # The publication serves the Marshal and compact indexes; gems pass through.
    "gem": Kind("gem/gem", "gem/gem", "gem/gem", "gem/gem", package=r"gems/.*\.gem"),
    "container": Kind("container/container", "container/container",
                      "container/container"),
    # make clients: the range-heavy clients' 8 MiB file (not in the parity corpus).
    "file": Kind("file/file", "file/file", "file/file", "file/file"),
}
#: Pull-through distributions whose endpoints are not the plugin's usual ones: no
#: repository, the distribution on a remote of its own type.
PULL_THROUGH_KINDS: dict[str, Kind] = {
    "container": Kind("", "container/pull-through", "container/pull-through"),
}
#: The remote's policy of a pull-through distribution (pulp_container's pull-through
#: remote accepts only on_demand; for the others the content app saves what it
#: fetches unless the remote is ``streamed``).
PULL_THROUGH_POLICY = {"container": "on_demand"}


def signed_repository(plugin: str, service: str) -> dict[str, object]:
    """The repository fields of a signed repository (pulp_rpm signs ``repomd.xml`` with
    the repository's ``metadata_signing_service``)."""
    return {"metadata_signing_service": service} if plugin == "rpm" else {}


def signed_publication(plugin: str, service: str) -> dict[str, object]:
    """The publication fields of a signed publication (pulp_deb's ``signing_service``
    signs each ``Release``: ``InRelease``, ``Release.gpg``)."""
    return {"signing_service": service} if plugin == "deb" else {}


#: Pull-through distributions on a ``streamed`` remote (python, npm): the content app
#: streams each file and saves nothing (pulpcore: ``save_artifact`` is False for a
#: streamed remote, ``handler.py:1008-1011``; no content unit is made either).
PULL_THROUGH_STREAMED = "pull_through_streamed"


def pulls_through(policy: str) -> bool:
    """Whether the distribution of this policy serves a remote alone (``pull_through``,
    ``pull_through_streamed``)."""
    return policy.startswith("pull_through")


def never_stores(policy: str) -> bool:
    """Whether the distribution's remote is ``streamed``: nothing may ever be saved."""
    return policy in ("streamed", PULL_THROUGH_STREAMED)


def remote_policy(plugin: str, policy: str) -> str:
    """The ``policy`` of the remote a distribution of this (corpus) policy syncs or pulls
    through."""
    if policy == "pull_through":
        return PULL_THROUGH_POLICY.get(plugin, "immediate")
    return {"signed": "immediate", PULL_THROUGH_STREAMED: "streamed"}.get(policy, policy)


def kind_of(plugin: str, policy: str) -> Kind:
    """The endpoints of a plugin's distribution of this policy."""
    if pulls_through(policy):
        return PULL_THROUGH_KINDS.get(plugin, KINDS[plugin])
    return KINDS[plugin]


class PulpApi:
    """pulpcore-api through the stack's nginx, Basic auth; tasks waited for. ``root``:
    the API root, ``/pulp/api/v3/``, or with ``DOMAIN_ENABLED`` a domain's
    ``/pulp/<domain>/api/v3/`` (everything made through it belongs to that domain)."""

    def __init__(self, origin: str, root: str = API) -> None:
        self.origin = origin
        self.root = root
        self.client = httpx.Client(base_url=origin, auth=stacks.ADMIN, timeout=120)

    def post(self, path: str, body: dict[str, object]) -> dict:
        response = self.try_post(path, body)
        if response.status_code >= 400:
            raise SystemExit(f"POST {path} {body}: {response.status_code} {response.text}")
        return response.json()  # type: ignore[no-any-return]

    def try_post(self, path: str, body: dict[str, object]) -> httpx.Response:
        """The API's answer to a POST, whatever its status."""
        return self.client.post(path if path.startswith("/") else self.root + path, json=body)

    def upload(self, path: str, repository: str) -> str:
        """Upload an Ansible collection into the repository; the task's href."""
        with open(path, "rb") as source:
            response = self.client.post(f"{self.root}content/ansible/collection_versions/",
                                        data={"repository": repository},
                                        files={"file": (os.path.basename(path), source)})
        if response.status_code >= 400:
            raise SystemExit(f"upload {path}: {response.status_code} {response.text}")
        return response.json()["task"]  # type: ignore[no-any-return]

    def get(self, href: str) -> dict:
        response = self.client.get(href)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def wait(self, tasks: list[str], timeout: float = 300) -> list[dict]:
        """Until every task has finished; the tasks in order, or exit naming a failed
        one."""
        pending, done = list(tasks), {}
        deadline = time.monotonic() + timeout
        while pending:
            for href in list(pending):
                task = self.get(href)
                if task["state"] in ("completed", "failed", "canceled"):
                    if task["state"] != "completed":
                        raise SystemExit(f"task {task['name']} {task['state']}: "
                                         f"{task.get('error')}")
                    done[href] = task
                    pending.remove(href)
            if pending:
                if time.monotonic() > deadline:
                    raise SystemExit(f"tasks still running after {timeout}s: {pending}")
                time.sleep(0.3)  # the task API has no way to wait for a state change
        return [done[href] for href in tasks]


@dataclass
class Served:
    """One distribution made through the API, and what it serves."""

    plugin: str
    policy: str
    upstream: fixtures.Upstream
    base_path: str = ""
    repository: str = ""
    remote: str = ""
    publication: str | None = None
    distribution: str = ""
    #: relative paths the distribution serves (published or in the repository version)
    files: list[str] = field(default_factory=list)
    #: container: blob digests in the repository version
    blobs: list[str] = field(default_factory=list)
    #: served path (container: blob digest) -> its content artifact's pk
    artifacts: dict[str, str] = field(default_factory=dict)
    #: what the apps fetch from the upstream (on-demand content with a remote artifact,
    #: every file of a pull-through distribution): served path or digest -> its state
    #: key for ``saved`` (a content artifact's pk, or ``url:<upstream url>``)
    cold: dict[str, str] = field(default_factory=dict)
    #: what a client fetches through an API's redirect (container: blob digest; ansible:
    #: the collection's file name) -> the sha256 its bytes must have ("sha256:<hex>")
    downloads: dict[str, str] = field(default_factory=dict)
    #: the state keys an app is expected to save after fetching (pull-through: the
    #: remote's ``get_remote_artifact_content_type`` names a content type; streamed:
    #: none)
    saves: set[str] = field(default_factory=set)
    #: container pull-through: the name a client pulls (``<base path>/<upstream name>``)
    registry_path: str = ""
    #: ``DOMAIN_ENABLED``: the domain everything of this distribution was made in
    domain: str = ""
    #: a streamed remote's content: content artifact pk -> the sha256 its remote
    #: artifact declares (None: none declared); a streamed pull-through distribution's
    #: files (in no table until saved): ``url:<upstream url>`` -> the sha256 of the
    #: upstream's bytes; nothing may ever be saved for them
    never_saved: dict[str, str | None] = field(default_factory=dict)
    #: npm: whether Pulp will know its tarballs' sha512 when the packument is asked
    #: (False: streamed, and no remote artifact records one)
    sha512_known: bool = True
    #: a domain on object storage (``object_storage.DOMAINS``): ``S3 redirect`` or ``S3
    #: proxy``; empty on FileSystem storage
    storage: str = ""

    @property
    def who(self) -> str:
        """How its requests are labelled: ``<plugin> <policy>[ [<storage>]]``."""
        return f"{self.plugin} {self.policy}" + (f" [{self.storage}]" if self.storage else "")

    def path_of(self, content_artifact: str) -> str:
        """The served path (container: digest) of one of its content artifacts."""
        return next((path for path, pk in self.artifacts.items() if pk == content_artifact),
                    content_artifact)

    @property
    def content_base(self) -> str:
        """The distribution's URL path in the content app: ``<prefix>[<domain>/]<base
        path>`` (pulpcore's content routes put the domain first)."""
        return stacks.PREFIX + (f"{self.domain}/" if self.domain else "") + self.base_path

    @property
    def registry_name(self) -> str:
        """The name pulp_container's registry API and its blob route know the image by:
        ``[<domain>/]<base path or pulled path>``."""
        return (f"{self.domain}/" if self.domain else "") + (self.registry_path
                                                             or self.base_path)

    @property
    def api_base(self) -> str:
        """The distribution in the plugins' own APIs (pulp_python's ``/pypi/``,
        pulp_ansible's Galaxy API): ``[<domain>/]<base path>``."""
        return (f"{self.domain}/" if self.domain else "") + self.base_path


def create(api: PulpApi, upstreams: dict[tuple[str, str], fixtures.Upstream],
           plugins: list[str], unique: str, signing: dict[str, str] | None = None,
           domain: str = "") -> list[Served]:
    """Remote, repository, sync, publication, distribution for every (plugin, policy),
    each step dispatched for all of them at once (the workers take two at a time);
    ``domain``: the domain ``api`` makes them in."""
    served = [Served(plugin, policy, upstream, domain=domain) for (plugin, policy), upstream
              in upstreams.items() if plugin in plugins]
    served.sort(key=lambda one: plugins.index(one.plugin))
    for one in served:
        kind, name = kind_of(one.plugin, one.policy), f"parity-{one.plugin}-{one.policy}-{unique}"
        remote = {"name": name, "url": one.upstream.url, **one.upstream.remote,
                  "policy": remote_policy(one.plugin, one.policy)}
        if one.plugin == "python":
            remote["includes"] = [one.upstream.package]
        if kind.remote and one.upstream.url:
            one.remote = api.post(f"remotes/{kind.remote}/", remote)["pulp_href"]
        if kind.repository and not pulls_through(one.policy):
            one.repository = api.post(f"repositories/{kind.repository}/", {
                "name": name, **(signed_repository(one.plugin, (signing or {})[one.plugin])
                                 if one.policy == "signed" else {})})["pulp_href"]
        one.base_path = f"parity-{unique}/{one.plugin}/{one.policy.replace('_', '-')}"
    api.wait([api.post(f"{one.repository}sync/", {"remote": one.remote})["task"]
              for one in served if one.repository and one.remote]
             + [api.upload(one.upstream.upload, one.repository) for one in served
                if one.upstream.upload])
    # pulp_ansible signs collections in a repository (a new version with their
    # CollectionVersionSignature), each with its MANIFEST.json.
    api.wait([api.post(f"{one.repository}sign/", {
        "content_units": ["*"], "signing_service": (signing or {})[one.plugin]})["task"]
        for one in served if one.plugin == "ansible" and one.policy == "signed"])
    publishing = [one for one in served if KINDS[one.plugin].publication and one.repository]
    tasks = api.wait([api.post(f"publications/{KINDS[one.plugin].publication}/",
                               {"repository": one.repository,
                                **KINDS[one.plugin].publication_fields,
                                **(signed_publication(one.plugin, (signing or {})[one.plugin])
                                   if one.policy == "signed" else {})})["task"]
                      for one in publishing])
    for one, task in zip(publishing, tasks, strict=True):
        one.publication = task["created_resources"][0]
    tasks = api.wait([api.post(f"distributions/{kind_of(one.plugin, one.policy).distribution}/", {
        "name": f"parity-{one.plugin}-{one.policy}-{unique}", "base_path": one.base_path,
        **({"publication": one.publication} if one.publication
           else {"repository": one.repository} if one.repository
           else {"remote": one.remote}),
        **KINDS[one.plugin].distribution_fields})["task"] for one in served])
    for one, task in zip(served, tasks, strict=True):
        one.distribution = next(href for href in task["created_resources"]
                                if "/distributions/" in href)
    return served


def learn_pulled(api: PulpApi, registry: Registry, served: list[Served]) -> None:
    """What a client asks of each pull-through distribution, learnt from the plugin's API
    as the client learns it: pulp_python's simple page (pulpcore-api's
    ``/pypi/<base path>/simple/<name>/``) links each file to the content app as
    ``<file>?redirect=<upstream url>``; a pull of ``<base path>/<name>:<tag>`` from
    pulp_container's registry API makes the image's repository and distribution and a
    task that saves the manifest and its blobs (on demand) in it."""
    for one in served:
        if not pulls_through(one.policy):
            continue
        if one.plugin == "python":
            page = registry.client.get(f"/pypi/{one.api_base}/simple/{one.upstream.package}/",
                                       auth=stacks.ADMIN)
            prefix = f"{one.content_base}/"
            links = [urlsplit(html.unescape(href)) for href in
                     re.findall(r'href="([^"]+)"', page.text)]
            one.files = [link.path[len(prefix):] + f"?{link.query}" for link in links
                         if link.path.startswith(prefix) and link.query]
            if page.status_code != 200 or not one.files:
                raise SystemExit(f"pulp_python's simple page of {one.base_path}: "
                                 f"{page.status_code} {page.text[:300]}")
        elif one.plugin == "container":
            one.registry_path = f"{one.base_path}/{one.upstream.package}"
            token = registry.token(one.registry_name)
            manifest = registry.client.get(
                f"/v2/{one.registry_name}/manifests/{one.upstream.version}",
                headers={"Authorization": f"Bearer {token}",
                         "Accept": "application/vnd.oci.image.manifest.v1+json"})
            if manifest.status_code != 200:
                raise SystemExit(f"pull-through manifest of {one.registry_path}: "
                                 f"{manifest.status_code} {manifest.text[:300]}")
            one.repository = pulled_repository(api, one.registry_path)


def pulled_repository(api: PulpApi, name: str, timeout: float = 120) -> str:
    """The href of the repository pulp_container's pull-through made for ``name``, once
    its task has saved the image (manifest, config and layer) in a version."""
    deadline = time.monotonic() + timeout
    while True:
        found = api.get(f"{api.root}repositories/container/container/?name={quote(name)}"
                        )["results"]
        if found and not found[0]["latest_version_href"].endswith("/versions/0/"):
            version = api.get(found[0]["latest_version_href"])
            present = version["content_summary"]["present"]
            if present.get("container.blob", {}).get("count", 0) >= 2:
                return found[0]["pulp_href"]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise SystemExit(f"pull-through of {name}: no image saved after {timeout}s")
        time.sleep(0.5)  # a task another process runs: nothing to wait on but its row


def discover(served: list[Served]) -> None:
    """What each distribution serves, from the database the apps read: the publication's
    published paths (and the version's content when it passes through), or the
    repository version's content paths; container blobs by digest. Each with its
    content artifact (``Served.artifacts``), whose ``artifact`` tells whether it is
    saved."""
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # pulpcore's logging says INFO
    from pulpcore.app.models import (
        ContentArtifact,
        Publication,
        PublishedArtifact,
        Remote,
        RemoteArtifact,
        Repository,
    )

    for one in served:
        if pulls_through(one.policy) and not one.repository:  # nothing until asked
            remote = Remote.objects.get(pk=one.remote.rstrip("/").split("/")[-1]).cast()
            one.files = one.files or list(one.upstream.paths)
            one.cold = {path: "url:" + upstream_url(one.upstream.url, path)
                        for path in one.files}
            one.saves = {key for path, key in one.cold.items() if remote
                         .get_remote_artifact_content_type(path.split("?")[0]) is not None
                         and not never_stores(one.policy)}
            if never_stores(one.policy):
                # Nothing of it is in the database: watched by the upstream's bytes.
                one.never_saved = {key: hashlib.sha256(httpx.get(key[4:]).content).hexdigest()
                                   for key in one.cold.values()}
            continue
        repository = Repository.objects.get(pk=one.repository.rstrip("/").split("/")[-1])
        version = repository.latest_version()
        in_version = ContentArtifact.objects.filter(content__in=version.content)
        found: dict[str, str] = {}
        if one.publication:
            publication = Publication.objects.get(pk=one.publication.rstrip("/").split("/")[-1])
            if publication.pass_through:
                found.update((path, str(pk)) for path, pk in
                             in_version.values_list("relative_path", "pk"))
            found.update((path, str(pk)) for path, pk in
                         PublishedArtifact.objects.filter(publication=publication)
                         .values_list("relative_path", "content_artifact_id"))
        elif one.plugin == "container":
            from pulp_container.app.models import Blob

            # The content app serves container content by digest only.
            found.update((digest, str(pk)) for digest, pk in in_version.filter(
                content__in=Blob.objects.filter(pk__in=version.content)
            ).values_list("content__container_blob__digest", "pk"))
            one.blobs = sorted(found)
        else:
            found.update((path, str(pk)) for path, pk in
                         in_version.values_list("relative_path", "pk"))
        one.artifacts = found
        one.files = [] if one.plugin == "container" else sorted(found)
        if one.plugin == "container":
            one.downloads = {digest: digest for digest in one.blobs}
        elif one.plugin == "ansible":  # the Galaxy API's download of each collection
            from pulp_ansible.app.models import CollectionVersion

            one.downloads = {path: f"sha256:{sha256}" for path, sha256 in
                             CollectionVersion.objects.filter(pk__in=version.content)
                             .values_list("contentartifact__relative_path", "sha256")}
        if one.policy in ("on_demand", "streamed") or pulls_through(one.policy) or (
                one.plugin in RECLAIMED and one.remote):
            fetched = {str(pk) for pk in ContentArtifact.objects.filter(
                pk__in=list(found.values()), remoteartifact__isnull=False
            ).values_list("pk", flat=True)}
            one.cold = {path: pk for path, pk in sorted(found.items()) if pk in fetched}
            # A streamed remote's content is never saved (pulpcore: save_artifact is
            # ``policy != streamed``).
            one.saves = set(one.cold.values()) if one.policy != "streamed" else set()
            if one.policy == "streamed":
                one.sha512_known = RemoteArtifact.objects.filter(
                    content_artifact__in=list(one.cold.values()), sha512__isnull=False
                ).exists()
                one.never_saved = {pk: None for pk in one.cold.values()}
                one.never_saved.update((str(pk), sha256) for pk, sha256 in
                                       RemoteArtifact.objects.filter(
                                           content_artifact__in=list(one.never_saved),
                                           sha256__isnull=False).values_list(
                                               "content_artifact_id", "sha256"))


#: Synced content that is stored after every sync, made cold by dropping its artifact as
#: pulpcore's reclaim task drops reclaimable content's: pulp_ansible 0.30.3 has no
#: on-demand collections (its REST API offers only ``immediate`` for a CollectionRemote,
#: and the sync opens each new collection's tarball, ``_handle_collection_version``:
#: "TODO change logic when implementing normal on-demand syncing"), and a
#: CollectionVersion is ``PROTECTED_FROM_RECLAIM``. Its remote artifact (the Galaxy
#: ``download_url``) is what both apps stream from.
RECLAIMED = ("ansible",)


def upstream_url(remote_url: str, path: str) -> str:
    """The upstream URL a pull-through request fetches: pulp_python's ``?redirect=``
    names it, otherwise the path is joined to the remote's url
    (``Remote.get_remote_artifact_url``)."""
    from urllib.parse import parse_qs, urljoin

    target, _, query = path.partition("?")
    redirect = parse_qs(query).get("redirect")
    return redirect[0] if redirect else urljoin(remote_url, target)


def saved(content_artifacts: Iterable[str]) -> set[str]:
    """Which of these content artifacts have their artifact saved: a content artifact's
    pk, or ``url:<upstream url>`` for pull-through content (a content artifact with a
    remote artifact of that url)."""
    from pulpcore.app.models import ContentArtifact

    wanted = list(content_artifacts)
    found = {str(pk) for pk in ContentArtifact.objects.filter(
        pk__in=[w for w in wanted if not w.startswith("url:")], artifact__isnull=False
    ).values_list("pk", flat=True)}
    found.update(w for w in wanted if w.startswith("url:") and ContentArtifact.objects.filter(
        remoteartifact__url=w[4:], artifact__isnull=False).exists())
    return found


def streamed_saved(never: dict[str, str | None]) -> set[str]:
    """Of a streamed remote's content artifacts (pk -> the sha256 its remote artifact
    declares), those an artifact was saved for: linked to the content artifact, or an
    Artifact row of that sha256 in any domain (saved, even if never linked)."""
    from pulpcore.app.models import Artifact

    found = saved(never)
    by_digest = {sha256: pk for pk, sha256 in never.items() if sha256}
    found.update(by_digest[sha256] for sha256 in Artifact.objects.filter(
        sha256__in=list(by_digest)).values_list("sha256", flat=True))
    return found


#: Plugins whose REST API refuses a ``streamed`` remote: (the remote endpoint, where the
#: installed version says so). Each is asked for one; a remote made fails the run.
STREAMED_REFUSED: dict[str, tuple[str, str]] = {
    "ostree": ("remotes/ostree/ostree/",
               "pulp_ostree 2.6.1 `pulp_ostree/app/serializers.py:168`: "
               "`OstreeRemoteSerializer.policy` choices `[Remote.IMMEDIATE, Remote.ON_DEMAND]`"),
    "maven": ("remotes/maven/maven/",
              "pulpcore 3.123.1 `pulpcore/app/serializers/repository.py:103-111`: "
              "`RemoteSerializer.policy` offers `immediate` alone, and "
              "`MavenRemoteSerializer` (pulp_maven 0.36.0 `pulp_maven/app/serializers.py:440`) "
              "keeps it"),
    "ansible": ("remotes/ansible/collection/",
                "pulpcore 3.123.1 `pulpcore/app/serializers/repository.py:103-111`: "
                "`RemoteSerializer.policy` offers `immediate` alone, and "
                "`CollectionRemoteSerializer` (pulp_ansible 0.30.3 "
                "`pulp_ansible/app/serializers.py:213`) keeps it"),
    "container": ("remotes/container/pull-through/",
                  "pulp_container 2.30.0 `pulp_container/app/serializers.py:412`: "
                  "`ContainerPullThroughRemoteSerializer.policy` choices `[Remote.ON_DEMAND]` "
                  "(the pull-through remote only; `ContainerRemote` offers `streamed`, line 385, "
                  "and is in the corpus)"),
}


def streamed_refused(api: PulpApi, plugins: list[str], unique: str
                     ) -> list[tuple[str, str, str, str | None]]:
    """Ask each plugin of ``STREAMED_REFUSED`` for a streamed remote: (plugin, the API's
    answer, the source, why this is a failure or None). The answer must be a 400 naming
    ``policy``."""
    found = []
    for plugin, (endpoint, source) in STREAMED_REFUSED.items():
        if plugin not in plugins:
            continue
        response = api.try_post(endpoint, {"name": f"parity-{plugin}-streamed-{unique}",
                                           "url": "http://127.0.0.1:9/", "policy": "streamed"})
        text = response.text[:200]
        why = None
        if response.status_code != 400 or "policy" not in response.text:
            why = f"expected a 400 naming policy, got {response.status_code}"
        found.append((plugin, f"{response.status_code} `{base._escape(text)}`", source, why))
    return found


@dataclass
class PluginProbe(base.Probe):
    plugin: str = ""
    policy: str = ""
    #: container: the blob digest the answer must hash to and name in Docker-Content-Digest
    digest: str | None = None
    #: on-demand content not fetched yet: each app is asked right after ``unsave``, cold
    #: probes of one group together (COLD_GROUPS)
    cold: str | None = None
    #: the content artifact a cold request is about (whether the app saved it is compared)
    content_artifact: str | None = None
    #: npm: whether Pulp knows the sha512 of the distribution's tarballs (a packument's
    #: ``dist.integrity``; ``Served.sha512_known``)
    sha512_known: bool = True
    #: the distribution's object storage (``Served.storage``); empty on FileSystem
    storage: str = ""


#: The requests each app makes of on-demand content nobody has fetched, in this order
#: (the GET saves the artifact; later requests meet it saved).
COLD_GROUPS = ("HEAD", "range", "GET")


def _directories(files: Iterable[str]) -> list[str]:
    found = {posixpath.dirname(path.split("?")[0]) for path in files}
    for path in list(found):
        while path:
            found.add(path)
            path = posixpath.dirname(path)
    return sorted(path + "/" for path in found if path)


def _facts(one: Served) -> frozenset[str]:
    """What the database says of ``one``'s distribution for the rules: whether it has a
    content guard (pulp_container gives every distribution one), so our answers there
    say ``private`` (``base.PrivateRule``)."""
    from pulpcore.app.models import Distribution

    if not one.distribution:
        return frozenset()
    pk = one.distribution.rstrip("/").split("/")[-1]
    guarded = Distribution.objects.filter(pk=pk, content_guard__isnull=False).exists()
    return frozenset({base.GUARDED}) if guarded else frozenset()


def probes_for(one: Served, registry: Callable[[Served, str], str]) -> list[PluginProbe]:
    """The requests of one distribution; ``registry(served, digest)`` is the registry
    API's redirect target for a blob."""
    base_url = one.content_base
    kind = KINDS[one.plugin]
    facts = _facts(one)

    def probe(label: str, path: str, method: str = "GET", **headers: str) -> PluginProbe:
        return PluginProbe(f"{one.who}: {label}", path, method,
                           {k.replace("_", "-"): v for k, v in headers.items()},
                           plugin=one.plugin, policy=one.policy,
                           sha512_known=one.sha512_known, storage=one.storage, facts=facts)

    def cold(key: str, label: str, path: str, digest: str | None = None
             ) -> list[PluginProbe]:
        """HEAD, a range and a GET of content the apps fetch from the upstream, before
        anything fetched it (``key``: the path or digest in ``Served.cold``)."""
        if key not in one.cold:
            return []
        return [PluginProbe(f"{one.who}: cold {group} {label}", path,
                            "HEAD" if group == "HEAD" else "GET",
                            {"Range": "bytes=0-99"} if group == "range" else {},
                            plugin=one.plugin, policy=one.policy, cold=group,
                            digest=digest if group == "GET" else None,
                            content_artifact=one.cold[key], storage=one.storage,
                            facts=facts)
                for group in COLD_GROUPS]

    found: list[PluginProbe] = []
    if one.plugin == "container":
        for digest in one.blobs:
            target = registry(one, digest)
            short = digest[7:19]
            found += cold(digest, f"blob {short} (registry redirect)", target, digest)
            for label, method, headers in (("blob", "GET", {}), ("blob HEAD", "HEAD", {}),
                                           ("blob range", "GET", {"Range": "bytes=0-99"})):
                found.append(PluginProbe(f"{one.who}: {label} {short} "
                                         "(registry redirect)", target, method, headers,
                                         plugin="container", policy=one.policy,
                                         digest=digest if method == "GET" and not headers
                                         else None, storage=one.storage, facts=facts))
            found.append(probe(f"blob {short} without the redirect's signature",
                               urlsplit(target).path))
        found.append(probe("unknown blob (unsigned)",
                           f"/pulp/container/{one.registry_name}/blobs/"
                           f"sha256:{'0' * 64}"))
        return found
    for filename, digest in one.downloads.items():  # ansible: the Galaxy API's redirect
        target = registry(one, filename)
        found.append(PluginProbe(f"{one.who}: {filename} (Galaxy API "
                                 "redirect)", target, plugin=one.plugin, policy=one.policy,
                                 digest=digest, storage=one.storage, facts=facts))
    found += [probe("distribution without slash", base_url),
              probe("listing", f"{base_url}/"), probe("listing HEAD", f"{base_url}/", "HEAD"),
              probe("missing file", f"{base_url}/missing-{one.plugin}.bin")]
    for directory in _directories(one.files):
        found.append(probe(f"listing {directory}", f"{base_url}/{quote(directory)}"))
    found.append(probe("sub listing without slash",
                       f"{base_url}/{quote(_directories(one.files)[0].rstrip('/'))}")
                 if _directories(one.files) else probe("no sub listing", f"{base_url}/x/"))
    for path in one.files:
        target, query = path.split("?")[0], path.partition("?")[2]
        url = f"{base_url}/{quote(target)}" + (f"?{query}" if query else "")
        found += cold(path, path, url)
        found.append(probe(f"file {path}", url))
        # A signed rpm or deb repository's packages are its immediate twin's: only its
        # metadata and signatures are new (a signed collection is a package of its own).
        if re.fullmatch(kind.package, target) and not (
                one.policy == "signed" and one.plugin in ("rpm", "deb")):
            found += [
                probe(f"HEAD {path}", url, "HEAD"),
                probe(f"range {path}", url, Range="bytes=0-99"),
                probe(f"suffix range {path}", url, Range="bytes=-100"),
                probe(f"unsatisfiable range {path}", url, Range="bytes=99999999-"),
                probe(f"If-None-Match * {path}", url, If_None_Match="*"),
                probe(f"If-Modified-Since future {path}", url,
                      If_Modified_Since="Fri, 01 Jan 2100 00:00:00 GMT"),
                probe(f"If-Modified-Since past {path}", url,
                      If_Modified_Since="Mon, 01 Jan 2001 00:00:00 GMT"),
            ]
    name, version = one.upstream.package, one.upstream.version
    wheels = [p.split("?")[0] for p in one.files if p.split("?")[0].endswith(".whl")]
    pulled = {  # a pull-through distribution: what its upstream does not have
        "python": [("wheel without ?redirect=", wheels[0] if wheels
                    else "x.whl"),
                   ("simple page", f"simple/{name}/"),
                   ("PyPI JSON (no publication)", f"pypi/{name}/json")],
        "npm": [("packument of an unknown package", "nope")],
        "maven": [("missing upstream file", f"org/example/parity/{name}/9.9/nope.jar")],
    }
    extra = pulled[one.plugin] if pulls_through(one.policy) else {
        "rpm": [("config.repo", "config.repo"), ("config.repo HEAD", "config.repo"),
                ("repomd.xml.asc (unsigned)", "repodata/repomd.xml.asc"),
                ("repomd.xml.key (unsigned)", "repodata/repomd.xml.key")],
        "deb": [("InRelease (unsigned)", "dists/stable/InRelease"),
                ("Release.gpg (unsigned)", "dists/stable/Release.gpg")],
        "python": [("PyPI JSON", f"pypi/{name}/json"),
                   ("PyPI JSON of a version", f"pypi/{name}/{version}/json"),
                   ("PyPI JSON of an unknown version", f"pypi/{name}/9.9/json"),
                   ("PyPI JSON of an unknown project", "pypi/nope/json"),
                   ("simple index without index.html", "simple/"),
                   ("simple page without index.html", f"simple/{name}/")],
        "npm": [("packument", name), ("packument HEAD", name),
                ("packument of an unknown package", "nope"),
                ("package folder", f"{name}/")],
        "ostree": [("missing delta index", "delta-indexes/xx/nope.index")],
        "ansible": [("unknown collection", "parity-nope-1.0.0.tar.gz")],
        "gem": [("unknown gem", "gems/nope-1.0.0.gem"), ("unknown info", "info/nope"),
                ("dependency API (not served)", f"api/v1/dependencies?gems={name}")],
        "file": [],
    }[one.plugin]
    for label, path in extra:
        if "(unsigned)" in label and one.policy == "signed":
            continue  # published: among the files above
        found.append(probe(label, f"{base_url}/{path}", "HEAD" if "HEAD" in label else "GET"))
    return found


def domain_probes(served: list[Served]) -> list[PluginProbe]:
    """``DOMAIN_ENABLED``: per plugin, its first file (container: blob) asked in the
    default domain, where the base path does not exist, and in an unknown domain; the
    run's domain's root listing."""
    found: list[PluginProbe] = []
    seen: set[str] = set()
    for one in served:
        if one.plugin in seen or not one.domain or one.storage or not (one.files
                                                                          or one.blobs):
            continue
        seen.add(one.plugin)
        if one.plugin == "container":
            name = one.registry_path or one.base_path
            where = [("default", "the default domain"), (f"nope-{one.domain}", "an unknown domain")]
            found += [PluginProbe(f"container {one.policy}: domain: blob in {label}",
                                  f"/pulp/container/{domain}/{name}/blobs/{one.blobs[0]}",
                                  plugin="container", policy=one.policy)
                      for domain, label in where]
            continue
        target = one.files[0].split("?")[0]
        found += [PluginProbe(f"{one.plugin} {one.policy}: domain: {target} in {label}",
                              f"{stacks.PREFIX}{domain}/{one.base_path}/{quote(target)}",
                              plugin=one.plugin, policy=one.policy)
                  for domain, label in (("default", "the default domain"),
                                        (f"nope-{one.domain}", "an unknown domain"))]
        if len(seen) == 1:
            found.append(PluginProbe(f"{one.plugin} {one.policy}: domain: the domain's root "
                                     "listing", f"{stacks.PREFIX}{one.domain}/",
                                     plugin=one.plugin, policy=one.policy))
    return found


class Registry:
    """The APIs' redirects to the content app through nginx, as a client meets them:
    pulp_container's registry API for a blob, pulp_ansible's Galaxy API for a
    collection."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.client = httpx.Client(base_url=origin, timeout=60, follow_redirects=False)
        #: (distribution's content base, digest) -> (status, Location) of the API's answer
        self.seen: dict[tuple[str, str], tuple[int, str]] = {}

    def token(self, name: str) -> str:
        response = self.client.get("/token/", auth=stacks.ADMIN, params={
            "service": urlsplit(self.origin).netloc, "scope": f"repository:{name}:pull"})
        response.raise_for_status()
        return response.json()["token"]  # type: ignore[no-any-return]

    def api_url(self, one: Served, key: str) -> str:
        if one.plugin == "container":
            return f"/v2/{one.registry_name}/blobs/{key}"
        # The Galaxy API root holds the domain (pulp_ansible/app/urls.py, GALAXY_API_ROOT),
        # the content path under it the base path alone.
        return (f"/pulp_ansible/galaxy/{one.api_base}/api/v3/plugin/ansible/content/"
                f"{one.base_path}/collections/artifacts/{key}")

    def redirect(self, one: Served, key: str) -> str:
        """The path and query of the API's redirect for a blob digest or a collection
        file (fails loudly when the API does not redirect). A container blob on object
        storage: pulp_container's registry API answers 500 there (``REGISTRY_S3``), so
        the content app's blob URL is signed here as that API signs it for FileSystem
        storage (``content_app_blob``)."""
        url = self.api_url(one, key)
        if one.plugin == "container":
            response = self.client.get(url, headers={
                "Authorization": f"Bearer {self.token(one.registry_name)}"})
        else:
            response = self.client.get(url, auth=stacks.ADMIN)
        location = response.headers.get("location", "")
        self.seen[(one.content_base, key)] = (response.status_code, location)
        if one.plugin == "container" and one.storage and response.status_code == 500:
            location = content_app_blob(one, key)
        elif response.status_code not in (301, 302, 307, 308) or not location:
            raise SystemExit(f"GET {url}: {response.status_code} {response.text[:300]}")
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    def front_door(self, target: str) -> base.Answer:
        response = self.client.get(target)
        return base.Answer(response.status_code, {k.lower(): v for k, v in
                                                  response.headers.items()}, response.content)


#: pulp_container 2.30.0's registry API on a domain of ``storages.backends.s3.S3Storage``
#: with ``REDIRECT_TO_OBJECT_STORAGE`` on (pulpcore's default): ``RedirectsMixin.__init__``
#: (``pulp_container/app/registry_api.py:1117-1133``) knows ``S3Boto3Storage`` (the
#: deprecated alias) but not ``S3Storage``, so every view of the domain raises
#: ``NotImplementedError``: a 500 for blobs and manifests alike (the traceback is in
#: pulpcore-api's log; the 500's body is Django's generic page).
REGISTRY_S3 = ("plugin bug: pulp_container 2.30.0's registry API answers 500 for every "
               "blob of a domain on `storages.backends.s3.S3Storage` "
               "(`pulp_container/app/registry_api.py:1117-1133`, `RedirectsMixin.__init__`: "
               "only the deprecated `S3Boto3Storage` is known, `NotImplementedError`); the "
               "content app's blob URL was signed here as that API signs it for FileSystem "
               "storage (`FileStorageRedirects`), with the distribution's content guard")


def content_app_blob(one: Served, digest: str) -> str:
    """The content app's URL of a blob as pulp_container's registry API redirects to it
    on FileSystem storage (``CommonRedirects.redirect_to_content_app``:
    ``CONTENT_ORIGIN/pulp/container/[<domain>/]<path>/blobs/<digest>``, preauthenticated
    by the distribution's content guard)."""
    from django.conf import settings
    from pulp_container.app.models import ContainerDistribution

    distribution = ContainerDistribution.objects.get(
        pk=one.distribution.rstrip("/").split("/")[-1])
    url = f"{settings.CONTENT_ORIGIN}/pulp/container/{one.registry_name}/blobs/{digest}"
    guard = distribution.content_guard
    return guard.cast().preauthenticate_url(url) if guard else url


def blob_check(answer: base.Answer, digest: str, registry: bool = True) -> str | None:
    """Why the answer is not the file of this digest (a registry's blob also names it in
    Docker-Content-Digest), or None."""
    if answer.status != 200:
        return f"status {answer.status}"
    got = "sha256:" + hashlib.sha256(answer.body).hexdigest()
    if got != digest:
        return f"body hashes to {got}"
    if registry and answer.headers.get("docker-content-digest") != digest:
        return f"Docker-Content-Digest {answer.headers.get('docker-content-digest')!r}"
    return None


def door_check(answer: base.Answer, digest: str, registry: bool) -> str | None:
    """``blob_check`` of what a client ends with through the front door: a redirect to
    object storage followed (``Docker-Content-Digest`` read on the app's own answer)."""
    location = answer.headers.get("location", "")
    if not s3.is_signed(location):
        return blob_check(answer, digest, registry)
    named = answer.headers.get("docker-content-digest")
    return blob_check(s3.follow(location, base.Probe("front door", "")), digest, False) or (
        f"Docker-Content-Digest {named!r}" if registry and named != digest else None)


#: pulp_container's blob route, as the registry API redirects to it.
CONTAINER_BLOB = r"/pulp/container/.+/blobs/sha256:[0-9a-f]{64}(\?.*)?"

#: The domain of a ``--domains`` run (``domain-<run id>``), between the prefix and the
#: base path; absent otherwise.
DOMAIN = r"(?:domain-[0-9a-f]+(?:-s3-[a-z]+)?/)?"
#: pulp_npm's packument: a package name right under an npm distribution of this corpus.
NPM_PACKUMENT = re.escape(stacks.PREFIX) + DOMAIN + r"parity-[0-9a-f]+/npm/[a-z-]+/[^/]+"

#: The corpus's distributions of a ``streamed`` remote (never stored; pull-through ones
#: too); container's by its blob route.
STREAMED = (r"(" + re.escape(stacks.PREFIX) + DOMAIN
            + r"parity-[0-9a-f]+/[a-z]+/(?:pull-through-)?streamed/.+"
            r"|/pulp/container/" + DOMAIN + r"parity-[0-9a-f]+/container/streamed/.+)")
#: pulp_python's pages asked of the content app on a pull-through distribution.
PYTHON_PULLED = (re.escape(stacks.PREFIX) + DOMAIN
                 + r"parity-[0-9a-f]+/python/pull-through/(simple/[^/]+/|pypi/[^/]+/json)")
#: The PyPI JSON API asked of the content app on a streamed pull-through distribution.
PYTHON_STREAMED_JSON = (re.escape(stacks.PREFIX) + DOMAIN
                        + r"parity-[0-9a-f]+/python/pull-through-streamed/pypi/[^/]+/json")

#: #16 item 4: a streamed or first on-demand answer describes the content, not the
#: upstream (docs/differences.md, upstream headers): pulpcore-content forwards the
#: upstream's validators, Accept-Ranges, Cache-Control and Content-Type.
_UPSTREAM = ("deliberate: a response describes the content, not the upstream: no upstream "
             "header is forwarded, the type comes from Pulp's mime map as for stored files "
             "(docs/differences.md, upstream headers)")


def from_upstream(probe: base.Probe) -> bool:
    """Whether pulpcore-content's answer to ``probe`` carries an upstream's headers: a
    first (cold) request of on-demand or pull-through content, or any request of a
    ``streamed`` or pull-through distribution (never stored: pulpcore-content
    forwards the upstream's answer each time). A stored file's answer is aiohttp's
    FileResponse on both sides of the comparison, so losing a header there is a bug.

    Decided by the probe, not its path: a cold probe and a later one of the same file
    share the path."""
    return isinstance(probe, PluginProbe) and (
        probe.cold is not None or probe.policy == "streamed" or pulls_through(probe.policy))


@dataclass(frozen=True)
class UpstreamRule(base.Rule):
    """A ``Rule`` that holds only for answers whose headers came from an upstream
    (``from_upstream``)."""

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        return from_upstream(probe) and super().explains(diff, probe, status)


@dataclass(frozen=True)
class BlobEtagRule(UpstreamRule):
    """Ours ``"<hex>"`` vs the registry's ``"sha256:<hex>"``, the same ``<hex>``: our ETag
    is the blob's own digest (the artifact's sha256), the registry's is not forwarded."""

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        return (super().explains(diff, probe, status)
                and diff.ours.strip('"') == diff.theirs.strip('"').removeprefix("sha256:"))


#: (ours: Pulp's mime map for the path, theirs: what the local upstream sent). Not
#: ``text/html``: the only pages streamed are pulp_python's simple pages, which a client
#: must get as HTML (pip skips any other type), and the port types them so.
_TYPES = r"application/octet-stream|text/xml|application/java-archive"
_UPSTREAM_TYPES = (r"application/(x-rpm|zip|gzip|xml|vnd\.debian\.binary-package|"
                   r"octet-stream)")

@dataclass(frozen=True)
class ShortFileRangeRule(base.Rule):
    """pulpcore-content's ``bytes 0-99/<n>`` for a file of ``n`` < 100 bytes whose size
    Pulp has not recorded, against ours ``bytes 0-<n-1>/<n>``: the same file, ours ending
    at its last byte. Any other pair (an end short of the last byte, another total) is a
    bug of ours the rule must not excuse."""

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        if not super().explains(diff, probe, status):
            return False
        end, total = (int(n) for n in diff.ours.removeprefix("bytes 0-").split("/"))
        return total < 100 and end == total - 1 and diff.theirs == f"bytes 0-99/{total}"


#: Differences of the plugins' content, keyed as parity.py's RULES are.
PLUGIN_RULES: list[base.Rule] = [
    # The five upstream-header rules hold only where pulpcore-content's answer came
    # from an upstream (``from_upstream``): on a stored file each would hide a lost
    # header (tests/unit/test_parity_plugin_rules_review.py).
    UpstreamRule("accept-ranges", base.ABSENT, r"bytes", _UPSTREAM, (200, 206)),
    UpstreamRule("etag", base.ABSENT, base.AIOHTTP_ETAG, _UPSTREAM, (200, 206)),
    # A verified on-demand blob: ours is the artifact's "<sha256>" (the blob's digest),
    # the registry's upstream ETag "sha256:<the same hex>" is not forwarded.
    BlobEtagRule("etag", base.SHA256_ETAG, r'"sha256:[0-9a-f]{64}"', _UPSTREAM, (200, 206)),
    # A streamed blob: streamed downloads are not verified, so ours has no ETag; the
    # registry's "sha256:<hex>" is not forwarded.
    UpstreamRule("etag", base.ABSENT, r'"sha256:[0-9a-f]{64}"', _UPSTREAM, (200, 206),
                 target=STREAMED),
    UpstreamRule("last-modified", base.ABSENT, base.HTTP_DATE, _UPSTREAM, (200, 206)),
    # #16 item 4 for pulp_container: a blob's Last-Modified is when it joined the
    # repository, on its first (live) answer as after its save.
    base.Rule("last-modified", base.HTTP_DATE, base.ABSENT,
              "deliberate: a blob's Last-Modified is when it joined the repository, the same "
              "before and after its on-demand or pull-through save; pulpcore-content sends "
              "none until the blob is stored (docs/differences.md, upstream headers)",
              (200, 206), target=CONTAINER_BLOB),
    UpstreamRule("cache-control", base.ABSENT, r"max-age=\d+", _UPSTREAM, (200, 206)),
    # The same on a guarded distribution (pulp_container gives each one a guard): nothing
    # forwarded, and private merged into the nothing (parity.PrivateRule's reason).
    UpstreamRule("cache-control", r"private", r"max-age=\d+", _UPSTREAM + "; on a guarded "
                 "distribution every answer says private (docs/differences.md, Cache-Control "
                 "of guarded distributions)", (200, 206), fact=base.GUARDED),
    UpstreamRule("content-type", _TYPES, _UPSTREAM_TYPES, _UPSTREAM, (200, 206)),
    base.Rule("content-type", r"application/json", r"text/plain; charset=utf-8",
              "deliberate: the packument is JSON; pulpcore-content sends aiohttp's default "
              "type (docs/differences.md, pulp_npm packument Content-Type)",
              (200,), target=NPM_PACKUMENT),
    base.Rule("content-length", r"\d+", r"\d+",
              "deliberate: the longer packument above (a HEAD carries its length, not the "
              "body)", (200,), target=NPM_PACKUMENT, method="HEAD"),
    base.Rule("content-type", r"text/plain; charset=utf-8", r".+",
              "deliberate: our 416 is a text error; pulpcore-content's carries the file's "
              "type when it answers from its cache (docs/differences.md, 416 responses)",
              (416,)),
    base.Rule("last-modified", base.HTTP_DATE, base.ABSENT,
              "deliberate: our 416 keeps the file's validators; pulpcore-content's from its "
              "cache has no Last-Modified (docs/differences.md, 416 responses)", (416,)),
    ShortFileRangeRule("content-range", r"bytes 0-\d+/\d+", r"bytes 0-99/\d+",
              "old-app bug: a range past the end of a file whose size Pulp has not "
              "recorded: pulpcore-content promises bytes 0-99 of a shorter file and cuts the "
              "answer short; ours ends the range at the last byte (RFC 9110 §14.1.1; "
              "docs/differences.md, on-demand content)", (206,)),
    base.Rule("content-length", r"\d{1,2}", "100",
              "old-app bug: as the Content-Range above (the 100 bytes promised are not "
              "there)", (206,)),
    base.Rule("x-pulp-cache", base.ABSENT, r"MISS|HIT",
              "deliberate: pulp_container blobs are not cached here; pulpcore-content keeps "
              "them in Redis per path, method and Accept (docs/differences.md, "
              "pulp_container blobs: response cache)", target=CONTAINER_BLOB),
    base.Rule("x-pulp-artifact-size", r"\d+", base.ABSENT,
              "deliberate: pulp_container's stored-blob answer (Registry._dispatch, an "
              "aiohttp FileResponse) has no X-PULP-ARTIFACT-SIZE; ours carries it as every "
              "stored file's (docs/differences.md, pulp_container blobs: "
              "X-PULP-ARTIFACT-SIZE)", (200,), target=CONTAINER_BLOB),
    base.Rule("x-pulp-artifact-size", r"\d+", base.ABSENT,
              "old-app slip: pulpcore-content's blob range answered from its cache (HIT) "
              "lacks the X-PULP-ARTIFACT-SIZE its uncached answers carry; ours are never "
              "cached (docs/differences.md, pulp_container blobs: response cache)", (206,),
              target=CONTAINER_BLOB),
    # A streamed remote (never stored): pulpcore-content's range code for streams.
    base.Rule("content-range", r"bytes \d+-\d+/\d+", r"bytes -\d+-\d+/\d+",
              "old-app bug: a suffix range of a streamed file: pulpcore-content takes "
              "aiohttp's negative start as a position (Content-Range bytes -100-…, a "
              "Content-Length 100 bytes over the file) and sends the whole file; ours the "
              "last bytes (RFC 9110 §14.1.2; docs/differences.md, suffix range of a streamed "
              "file)", (206,), target=STREAMED, whole=True),
    base.Rule("status", "416", "206",
              "old-app bug: a range starting past the end of a streamed file whose size the "
              "remote artifact does not record (pulp_npm's and pulp_gem's syncs record none): "
              "pulpcore-content checks the start only against a recorded size "
              "(pulpcore/content/handler.py:1345-1347) and answers 206 with Content-Range "
              "bytes 99999999-<last>/<size> and a negative Content-Length; ours 416 with "
              "bytes */<size> once the upstream's length is known (RFC 9110 §14.1.1, §15.5.17; "
              "docs/differences.md, range past the end of a streamed file)", (416,),
              target=STREAMED, method="GET", whole=True),
    base.Rule("body", r"416: Range Not Satisfiable", r"416: Requested Range Not Satisfiable",
              "deliberate: one 416 text on every path; pulpcore-content's streamed 416 is "
              "aiohttp's (docs/differences.md, 416 responses)", (416,), target=STREAMED),
    base.Rule("x-pulp-artifact-size", r"\d+", base.ABSENT,
              "deliberate: our 416 keeps X-PULP-ARTIFACT-SIZE; pulpcore-content's streamed "
              "416 has none (docs/differences.md, 416 responses)", (416,), target=STREAMED),
    base.Rule("status", "304", "200",
              "deliberate: preconditions on a download not stored yet are evaluated against "
              "the validators it has; pulpcore-content ignores them and streams the whole "
              "file (RFC 9110 §13.2.2; docs/differences.md, preconditions on downloads not "
              "stored yet)", target=STREAMED, whole=True),
    # pulp_python's hooks on a pull-through distribution (docs/differences.md,
    # pull-through content the plugin's hooks cannot save).
    base.Rule("transport", r"cut short after 0 body bytes, None more expected",
              r"cut short after \d+ body bytes, None more expected",
              "plugin bug (reported): pulp_python names a package for a simple page, its save "
              "fails and both apps cut the answer: pulpcore-content after the upstream's "
              "bytes, ours before the first (docs/differences.md, pull-through content the "
              "plugin's hooks cannot save)", (200,), target=PYTHON_PULLED, whole=True),
    base.Rule("status", "200", "500",
              "old-app bug: pulp_python's JSON API hook reads the pull-through "
              "distribution's missing publication (AttributeError, 500); ours passes the "
              "request on to pull-through, whose save fails as above, so the answer is cut "
              "(docs/differences.md, pull-through content the plugin's hooks cannot save)",
              target=PYTHON_PULLED, whole=True),
    base.Rule("status", "200", "500",
              "old-app bug: pulp_python's hook reads the distribution's publication, which a "
              "pull-through distribution has none of (`PythonDistribution.content_handler`, "
              "`pulp_python/app/models.py:126`: AttributeError, 500); ours answers the path as "
              "pulpcore-content does for any path no hook answers: from the remote, streamed "
              "(the remote is `streamed`: nothing saved) (docs/differences.md, pulp_python "
              "JSON API)", target=PYTHON_STREAMED_JSON, whole=True),
    base.Rule("transport", base.ABSENT, r"cut short after \d+ body bytes, \d+ more expected",
              "old-app bug: as the Content-Range above (pulpcore-content closes the "
              "connection after the bytes there are)", (206,)),
]


@dataclass(frozen=True)
class AskedRule(base.Rule):
    """A ``Rule`` that holds only for requests carrying ``header`` (name, value)."""

    header: tuple[str, str] = ("", "")

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        name, value = self.header
        return probe.headers.get(name) == value and super().explains(diff, probe, status)


@dataclass(frozen=True)
class BlobDigestEtagRule(base.Rule):
    """A ``Rule`` for our ETag of a blob: it must be ``"<hex>"`` of the digest the
    request names."""

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        named = re.search(r"/blobs/sha256:([0-9a-f]{64})", probe.path)
        return (super().explains(diff, probe, status) and named is not None
                and diff.ours == f'"{named.group(1)}"')


#: Request targets in the run's domains on object storage (``object_storage.DOMAINS``):
#: content under the prefix, container blobs under pulp_container's route.
_S3_TARGET = (r"(?:" + re.escape(stacks.PREFIX) + r"|/pulp/container/)domain-[0-9a-f]+-s3-{}/.+")
S3_REDIRECT = _S3_TARGET.format("redirect")
S3_PROXY = _S3_TARGET.format("proxy")
_S3_BLOB = r"/pulp/container/domain-[0-9a-f]+-s3-{}/.+/blobs/sha256:[0-9a-f]{{64}}(\?.*)?"
S3_BLOB_REDIRECT = _S3_BLOB.format("redirect")
S3_BLOB = _S3_BLOB.format("[a-z]+")
#: pulp_python's simple pages on object storage (its ``content_handler`` sends them).
S3_SIMPLE = (re.escape(stacks.PREFIX) + r"domain-[0-9a-f]+-s3-[a-z]+/parity-[0-9a-f]+/python/"
             r"[a-z-]+/simple(/.*)?")
_SIMPLE = ("deliberate: pulp_python's simple pages on object storage are sent inline by both "
           "apps (pulp_python#413); ours carry the published page's ETag, Last-Modified and "
           "X-PULP-ARTIFACT-SIZE as every stored file; pulp_python's hook answers "
           "`ArtifactResponse(headers={\"Content-Type\": \"text/html\"})` alone "
           "(`pulp_python/app/models.py:121`, `PythonDistribution.content_handler`) "
           "(docs/differences.md, pulp_python simple pages on object storage)")
_STAR_304 = ("deliberate: `If-None-Match: *` matches any stored file (RFC 9110 §13.1.2), so "
             "a client that holds it gets 304 before any redirect or proxying; "
             "pulpcore-content's own check (`check_request_was_modified`) compares ETags one "
             "by one and never matches `*` (docs/differences.md, 304 to If-None-Match: *)")

#: Differences of the domains on object storage (``--domains``; docs/differences.md,
#: "Redirects to object storage" and "Objects proxied from S3/Azure/GCS").
OBJECT_STORAGE_RULES: list[base.Rule] = [
    base.Rule("etag", base.ABSENT, base.SHA256_ETAG,
              "deliberate: a redirect to object storage carries no validators (they would "
              "describe the file, which the 302 is not; the storage sends its own); "
              "pulpcore-content's 302 has the file's ETag and Last-Modified "
              "(docs/storage.md; docs/differences.md, redirects to object storage)", (302,),
              target=S3_REDIRECT),
    base.Rule("last-modified", base.ABSENT, base.HTTP_DATE,
              "deliberate: as the ETag above (docs/differences.md, redirects to object "
              "storage)", (302,), target=S3_REDIRECT),
    base.Rule("content-type", r"text/plain; charset=utf-8", r"[a-z]+/[a-z0-9.+-]+; charset=utf-8",
              "deliberate: the 302's Content-Type describes its own `302: Found` text; "
              "pulpcore-content's names the file's type (with aiohttp's charset) on that text. "
              "Both send the file's type to the storage as `response-content-type` (the "
              "Locations are equal) (docs/differences.md, redirects to object storage)",
              (302,), target=S3_REDIRECT),
    base.Rule("etag", base.SHA256_ETAG, base.ABSENT, _SIMPLE, (200,), target=S3_SIMPLE),
    base.Rule("last-modified", base.HTTP_DATE, base.ABSENT, _SIMPLE, (200,), target=S3_SIMPLE),
    base.Rule("x-pulp-artifact-size", r"\d+", base.ABSENT, _SIMPLE, (200,), target=S3_SIMPLE),
    base.Rule("cache-control", r"public, max-age=0, must-revalidate", r"no-store",
              "deliberate: the 304 for a redirected file carries the file's Cache-Control; "
              "pulpcore-content's says no-store, written by the redirect it built before the "
              "check (docs/differences.md, conditional requests for a file redirected to "
              "object storage)", (304,), target=S3_REDIRECT),
    AskedRule("status", "304", "302", _STAR_304, target=S3_REDIRECT, whole=True,
              header=("If-None-Match", "*")),
    # What the client ends with: our 304, or the storage's answer to pulpcore-content's
    # redirect (moto sends the object to a GET with If-None-Match: *).
    AskedRule("storage status", "304", "200", _STAR_304, target=S3_REDIRECT, whole=True,
              header=("If-None-Match", "*")),
    AskedRule("status", "304", "200",
              _STAR_304.replace("(docs/", "; for an object it proxies, pulpcore-content's "
                                "`ArtifactResponse` sends the whole file (docs/"),
              target=S3_PROXY, whole=True, header=("If-None-Match", "*")),
    base.Rule("status", "302", r"20[06]",
              "deliberate: a stored blob on a domain that redirects to object storage gets a "
              "302 to a URL S3 signed for the method, as every stored file (and as "
              "pulp_container's registry API sends clients to S3 itself for stored blobs on "
              "`S3Boto3Storage`, `S3StorageRedirects`); pulp_container's blob route streams "
              "it through pulpcore-content (`pulp_container/app/registry.py`, "
              "`Registry._dispatch` → `ArtifactResponse`). The bytes a client ends with are "
              "compared as `storage` fields (docs/differences.md, pulp_container blobs on "
              "object storage)", target=S3_BLOB_REDIRECT, whole=True),
    BlobDigestEtagRule("etag", base.SHA256_ETAG, base.ABSENT,
                       "deliberate: a blob's ETag is its digest on every storage; "
                       "pulp_container's blob route sends none for a blob on object storage "
                       "(`Registry._dispatch` → `ArtifactResponse`) (docs/differences.md, "
                       "pulp_container blobs: ETag, Last-Modified)", (200, 206),
                       target=S3_BLOB),
    base.Rule("last-modified", base.HTTP_DATE, base.ABSENT,
              "deliberate: a blob's Last-Modified is when it joined the repository, on every "
              "storage; pulp_container's blob route sends none for a blob on object storage "
              "(docs/differences.md, pulp_container blobs: ETag, Last-Modified)", (200, 206),
              target=S3_BLOB),
    base.Rule("x-pulp-artifact-size", r"\d+", base.ABSENT,
              "deliberate: every stored blob's answer carries it; pulp_container's blob route "
              "on object storage (`Registry._dispatch` → `ArtifactResponse`) sends none "
              "(docs/differences.md, pulp_container blobs: X-PULP-ARTIFACT-SIZE)", (200, 206),
              target=S3_BLOB),
    base.Rule("docker-distribution-api-version", "registry/2.0", base.ABSENT,
              "deliberate: every blob answer carries it; pulp_container's blob route sends it "
              "only for blobs on the local filesystem (`Registry._dispatch` gives "
              "`ArtifactResponse` the headers without it) (docs/differences.md, "
              "pulp_container blobs: Docker-Distribution-API-Version)", target=S3_BLOB),
]


@dataclass(frozen=True)
class FetchedRule(base.Rule):
    """A ``Rule`` for pulpcore-content's answers that are an upstream's for sure: a cold
    request (nothing stored yet) or a ``streamed`` remote's file (never stored)."""

    def explains(self, diff: base.Difference, probe: base.Probe, status: int) -> bool:
        return (isinstance(probe, PluginProbe)
                and (probe.cold is not None or never_stores(probe.policy))
                and super().explains(diff, probe, status))


#: Before parity.py's rules, which read these values as a stored file's (aiohttp's
#: mtime-size ETag, the file's mtime): on a cold or streamed answer they are the
#: upstream's (the fixtures' nginx sends the same shapes).
FETCHED_RULES: list[base.Rule] = [
    FetchedRule("etag", base.SHA256_ETAG, base.AIOHTTP_ETAG, _UPSTREAM, (200, 206)),
    FetchedRule("last-modified", base.HTTP_DATE, base.HTTP_DATE, _UPSTREAM, (200, 206)),
]


#: parity.py's rules for a stored file's validators take ours from the database
#: (``Probe.expect``: the artifact's sha256, the time its content joined the repository).
#: The plugin corpus computes no such expectation yet, so for its probes ours only needs
#: the shape: a sha256 ETag, an HTTP date. Weaker than parity.py's check (a wrong digest or
#: date passes here), the part of issue #12 not done for plugin content.
STORED_SHAPE_RULES: list[base.Rule] = [
    base.Rule("etag", base.SHA256_ETAG, base.AIOHTTP_ETAG, base.ETAG),
    base.Rule("last-modified", base.HTTP_DATE, base.HTTP_DATE, base.LAST_MODIFIED,
              (200, 206, 304)),
    base.Rule("last-modified", base.HTTP_DATE, base.ABSENT, base.LAST_MODIFIED_304, (304,)),
]


def judge(probe: PluginProbe, ours: base.Answer, theirs: base.Answer,
          diffs: list[base.Difference]) -> list[str]:
    """``base.verdicts`` with ``OBJECT_STORAGE_RULES`` and ``FETCHED_RULES`` first (there
    parity.py's rules would also match, with a reason that does not hold),
    and one of their whole-answer rules, when it explains a difference, deciding the rest
    of the answer (a status the other rules would read as the other app's)."""
    for diff in diffs:
        whole = next((rule for rule in OBJECT_STORAGE_RULES
                      if rule.whole and rule.explains(diff, probe, ours.status)), None)
        if whole is not None:
            return [whole.why if other is diff else f"follows from the {whole.field} difference"
                    for other in diffs]
    return base.verdicts(probe, ours, theirs, diffs,
                         OBJECT_STORAGE_RULES + FETCHED_RULES + base.RULES + PLUGIN_RULES
                         + STORED_SHAPE_RULES)


def forget(served: list[Served], port: int, pair_dbs: Iterable[int]) -> None:
    """Drop the pair's cache entries for the on-demand distributions, as pulpcore's
    ``Repository.invalidate_cache`` does when content is reclaimed."""
    import redis
    from pulpcore.app.util import cache_key

    keys = [cache_key(path, one.domain or None) for one in served
            if one.policy != "immediate" or one.cold
            for path in (one.base_path, one.registry_path) if path]
    for db in pair_dbs:
        redis.Redis(host="127.0.0.1", port=port, db=db).delete(*keys)


def forget_pulled(api: PulpApi) -> None:
    """Delete what pull-through distributions created (content in no repository): the
    orphan cleanup, without its protection time."""
    api.wait([api.post("orphans/cleanup/", {"orphan_protection_time": 0})["task"]])


def unsave(content_artifacts: Iterable[str]) -> None:
    """Make on-demand content on-demand again: what pulpcore's reclaim task does to each
    content artifact (``pulpcore/app/tasks/reclaim_space.py``: unlink the artifact, delete
    it with its file). Done here, not through ``POST repositories/reclaim_space/``,
    because pulp_deb's and pulp_npm's packages are ``PROTECTED_FROM_RECLAIM`` (the
    default of ``Content``), so that task would leave them saved."""
    from django.db.models.deletion import ProtectedError
    from pulpcore.app.contexts import with_domain
    from pulpcore.app.models import ContentArtifact

    wanted = [pk for pk in content_artifacts if not pk.startswith("url:")]
    for content_artifact in ContentArtifact.objects.filter(
            pk__in=wanted, artifact__isnull=False).select_related("artifact__pulp_domain"):
        artifact = content_artifact.artifact
        content_artifact.artifact = None
        content_artifact.save(update_fields=["artifact"])
        # Shared with other content: kept, as the task keeps it. The file is deleted
        # from the artifact's domain's storage (Artifact.file resolves its storage
        # through the current domain, as in the task, which runs in the domain).
        with contextlib.suppress(ProtectedError), with_domain(artifact.pulp_domain):
            artifact.delete()


#: The verdict of a packument that is pulpcore-content's plus the fields npm requires.
NPM_ENTRIES = ("deliberate: version entries also carry name, version and dist.integrity, "
               "without which npm 11 refuses the packument; the rest is the same "
               "(docs/differences.md, pulp_npm packument: version entries)")
#: The same for a streamed remote's packument: no artifact is ever stored and pulp_npm's
#: sync records no sha512 in the remote artifact, so there is no integrity to give.
NPM_ENTRIES_UNKNOWN = ("deliberate: version entries also carry name and version; no "
                       "dist.integrity, since Pulp knows no sha512 of a streamed tarball "
                       "(never stored, none recorded by pulp_npm's sync); the rest is the "
                       "same (docs/differences.md, pulp_npm packument: version entries)")


def npm_packument_extends(ours: bytes, theirs: bytes, integrity: bool = True) -> bool:
    """Whether our packument is pulpcore-content's with ``name``, ``version`` and
    ``dist.integrity`` (``sha512-…``; absent when ``integrity`` is False: Pulp knows no
    sha512) added to each version entry, nothing else."""
    try:
        mine, old = json.loads(ours), json.loads(theirs)
    except ValueError:
        return False
    versions = mine.get("versions", {})
    if ({k: v for k, v in mine.items() if k != "versions"}
            != {k: v for k, v in old.items() if k != "versions"}
            or set(versions) != set(old.get("versions", {}))):
        return False
    for number, entry in versions.items():
        dist = dict(entry.get("dist", {}))
        given = dist.pop("integrity", None)
        if (not str(given).startswith("sha512-")) if integrity else given is not None:
            return False
        trimmed = {k: v for k, v in entry.items() if k not in ("name", "version", "dist")}
        if (entry.get("name") != mine.get("name") or entry.get("version") != number
                or {**trimmed, "dist": dist} != old["versions"][number]):
            return False
    return True


def compare(probe: PluginProbe, got: dict[str, base.Answer], kept: dict[str, bool],
            followed: dict[str, base.Answer] | None = None
            ) -> tuple[list[base.Difference], list[str]]:
    """The differences of one request's two answers and their verdicts. A redirect to
    object storage is compared without what changes with each signing
    (``object_storage.unsigned``), its signature verified for the request's method, and
    what the storage answered to each (``followed``) compared as ``storage <field>``."""
    shown = {side: signed_compared(answer) for side, answer in got.items()}
    diffs = base.differences(shown["asgi"], shown["legacy"], COMPARED)
    found = judge(probe, got["asgi"], got["legacy"], diffs)
    if (re.fullmatch(NPM_PACKUMENT, probe.path) and got["asgi"].status == 200
            and npm_packument_extends(got["asgi"].body, got["legacy"].body,
                                      probe.sha512_known)):
        entries = NPM_ENTRIES if probe.sha512_known else NPM_ENTRIES_UNKNOWN
        found = [entries if diff.field == "body" else verdict
                 for diff, verdict in zip(diffs, found, strict=True)]
        found = [base.FOLLOWS_BODY if diff.field == "content-length" and verdict ==
                 "UNEXPLAINED" else verdict for diff, verdict in zip(diffs, found, strict=True)]
    followed = followed or {}
    if followed:  # judged on their own: a whole-answer rule above excuses none of them
        ends = {side: followed.get(side, got[side]) for side in got}
        more = redirect_differences(probe, got, followed)
        diffs += more
        found += judge(probe, ends["asgi"], ends["legacy"], more)
    if kept and kept["asgi"] != kept["legacy"]:
        diffs.append(base.Difference("artifact saved afterwards", str(kept["asgi"]),
                                     str(kept["legacy"])))
        found.append("UNEXPLAINED")
    if probe.digest:
        for side, answer in got.items():
            # The bytes a client ends with (a redirect followed to the storage); the
            # registry's header on the app's own answer.
            named = answer.headers.get("docker-content-digest")
            wrong = blob_check(followed.get(side, answer), probe.digest, False) or (
                f"Docker-Content-Digest {named!r}"
                if probe.plugin == "container" and named != probe.digest else None)
            if wrong:
                diffs.append(base.Difference(f"{side}: the blob", wrong, probe.digest))
                found.append("UNEXPLAINED" if side == "asgi" else
                             "pulpcore-content's answer is not the blob (reported)")
    return diffs, found


def signed_compared(answer: base.Answer) -> base.Answer:
    """The answer with a signed S3 ``Location`` shown without what changes with each
    signing (``object_storage.unsigned``)."""
    location = answer.headers.get("location", "")
    if not s3.is_signed(location):
        return answer
    return base.Answer(answer.status, {**answer.headers, "location": s3.unsigned(location)},
                       answer.body)


def redirect_differences(probe: PluginProbe, got: dict[str, base.Answer],
                         followed: dict[str, base.Answer]) -> list[base.Difference]:
    """Each app's S3 redirect must be signed for the request's method (``<side>: location
    signature``) and the storage must not answer it with an error (``asgi: storage
    answer``; a 416 to a ``Range`` is an answer); what the client ends with compared
    (``storage <field>``): both storage answers, or, when one app redirected and the other
    answered itself, the storage's answer and that app's (status, length, range, body)."""
    found = []
    for side, answer in got.items():
        location = answer.headers.get("location", "")
        if s3.is_signed(location) and (why := s3.signature_problem(location, probe.method)):
            found.append(base.Difference(f"{side}: location signature", why, "valid"))
    mine = followed.get("asgi")
    if mine is not None and mine.status >= 400 and not (
            mine.status == 416 and "Range" in probe.headers):
        found.append(base.Difference("asgi: storage answer", str(mine.status),
                                     "the file, a range of it or 304"))
    ends = {side: followed.get(side, got[side]) for side in got}
    found += s3.followed_differences(
        ends["asgi"], ends["legacy"],
        s3.FOLLOWED if len(followed) == 2 else s3.FOLLOWED_ONE_SIDE)
    return found


Row = tuple[str, PluginProbe, base.Answer, base.Answer, list[base.Difference], list[str]]


#: How long an app may take to save an on-demand artifact after its answer (our app
#: finishes the download after the response; pulpcore-content before it).
SAVE_WAIT = 10.0


def settle(content_artifacts: set[str], timeout: float = SAVE_WAIT) -> set[str]:
    """The content artifacts saved once all are, or when ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        done = saved(content_artifacts)
        if done == content_artifacts or time.monotonic() > deadline:
            return done
        time.sleep(0.2)  # a row written by another process: nothing to wait on but the row


#: A streamed remote's content found saved: (what was asked before it was found, the
#: content artifacts).
Leak = tuple[str, list[str]]
#: A leak's "since" before any request: saved by the plugin's sync, not a content app
#: (pulp_container's sync of a streamed remote stores each image's config blob: it reads
#: it); ``unsave`` drops it before the first cold request, so the apps meet it unsaved.
SYNCED = "the syncs (nothing asked yet)"


def probe_all(probes: list[PluginProbe], pair: dict, host: str, expected: set[str],
              forget: Callable[[], None], forget_pulled: Callable[[], None],
              never: dict[str, str | None] | None = None) -> tuple[list[Row], list[Leak]]:
    """Both passes (ours first, theirs first). In each, every cold group goes to the
    first app with its content unsaved (``unsave``, cache entries forgotten), then,
    once the downloads it is ``expected`` to save are saved (or SAVE_WAIT has passed),
    to the second the same way. Then both apps' cache entries for the on-demand distributions are
    forgotten again and the rest of the requests go to both apps in the pass's
    order. ``never``: streamed content (``Served.never_saved``), looked for before each
    ``unsave`` (which would hide a save); what was found saved is returned with the
    requests asked since the last look (the caller looks once more when the apps have
    stopped)."""
    rows: list[Row] = []
    leaks: list[Leak] = []
    since = SYNCED

    def look() -> None:
        if never and (found := streamed_saved(never)):
            leaks.append((since, sorted(found)))

    for name, order in (("ours first", ("asgi", "legacy")), ("theirs first", ("legacy", "asgi"))):
        got: dict[int, dict[str, base.Answer]] = {id(p): {} for p in probes}
        kept: dict[int, dict[str, bool]] = {id(p): {} for p in probes}
        followed: dict[int, dict[str, base.Answer]] = {id(p): {} for p in probes}
        ask = functools.partial(ask_and_follow, pair, host, got, followed)

        for group in COLD_GROUPS:
            members = [p for p in probes if p.cold == group]
            keys = {p.content_artifact for p in members if p.content_artifact}
            for side in order if members else ():
                look()
                since = f"pass {name}: {side}'s cold {group} requests"
                unsave(keys)
                if any(key.startswith("url:") for key in keys):
                    forget_pulled()
                forget()
                for probe in members:
                    ask(side, probe)
                settle(keys & expected)
                done = saved(keys)
                for probe in members:
                    kept[id(probe)][side] = probe.content_artifact in done
        if any(p.cold for p in probes):
            forget()
        since = f"pass {name}: both apps' other requests"
        for probe in probes:
            if probe.cold is None:
                for side in order:
                    ask(side, probe)
        for probe in probes:
            diffs, found = compare(probe, got[id(probe)], kept[id(probe)],
                                   followed[id(probe)])
            rows.append((name, probe, got[id(probe)]["asgi"], got[id(probe)]["legacy"],
                         diffs, found))
    return rows, leaks


def ask_and_follow(pair: dict, host: str, got: dict[int, dict[str, base.Answer]],
                   followed: dict[int, dict[str, base.Answer]], side: str,
                   probe: PluginProbe) -> None:
    """The app's answer into ``got``; a redirect to object storage followed at once (the
    signed URL is fresh), as a client follows it, into ``followed``."""
    answer = got[id(probe)][side] = base.ask(pair[side][0], host, probe)
    if s3.is_signed(location := answer.headers.get("location", "")):
        followed[id(probe)][side] = s3.follow(location, probe)


#: Signature files of a signed distribution -> the file a detached one signs (None:
#: clear-signed).
SIGNATURES = {"/InRelease": None, "/Release.gpg": "/Release",
              "/repomd.xml.asc": "/repomd.xml"}


def check_signatures(rows: list[Row], folder: str) -> list[tuple[str, str | None, str | None]]:
    """Every signature file a signed distribution served in pass "ours first", checked
    with gpg against the run's key: (its path, why ours is not valid, why theirs is not),
    None when valid."""
    served: dict[str, tuple[base.Answer, base.Answer]] = {
        probe.path: (ours, theirs) for name, probe, ours, theirs, _, _ in rows
        if name == "ours first" and probe.policy == "signed" and probe.method == "GET"
        and not probe.headers}
    found = []
    for path, (ours, theirs) in sorted(served.items()):
        suffix = next((s for s in SIGNATURES if path.endswith(s)), None)
        if suffix is None:
            continue
        signed = SIGNATURES[suffix]
        data = served.get(path[:-len(suffix)] + signed) if signed else None
        verdicts: list[str | None] = []
        for index, answer in enumerate((ours, theirs)):
            if answer.status != 200:
                verdicts.append(f"status {answer.status}")
            elif signed and (data is None or data[index].status != 200):
                verdicts.append(f"{signed.lstrip('/')} not served")
            else:
                verdicts.append(signing.verify(folder, answer.body,
                                               data[index].body if data else None))
        found.append((path.split("/signed/", 1)[-1], verdicts[0], verdicts[1]))
    return found


def check_collection_signatures(rows: list[Row], served: list[Served], registry: Registry,
                                folder: str) -> list[tuple[str, str | None, str | None]]:
    """Each signed collection checked as ``ansible-galaxy`` checks one: the signature the
    Galaxy API lists with the collection version (``signatures[].signature``), verified
    with gpg against ``MANIFEST.json`` of the tarball each app served (pass "ours first",
    the file's GET): (label, why ours fails, why theirs fails), None when valid."""
    found = []
    for one in served:
        if (one.plugin, one.policy) != ("ansible", "signed"):
            continue
        namespace, name = one.upstream.package.split(".")
        detail = registry.client.get(
            f"/pulp_ansible/galaxy/{one.api_base}/api/v3/plugin/ansible/content/"
            f"{one.base_path}/collections/index/{namespace}/{name}/versions/"
            f"{one.upstream.version}/", auth=stacks.ADMIN)
        signatures = ([entry["signature"] for entry in detail.json().get("signatures", [])]
                      if detail.status_code == 200 else [])
        for filename in one.downloads:
            answers = next(((ours, theirs) for pass_name, probe, ours, theirs, _, _ in rows
                            if pass_name == "ours first" and probe.policy == one.policy
                            and probe.plugin == one.plugin and probe.storage == one.storage
                            and probe.label.endswith(f": file {filename}")), None)
            verdicts: list[str | None] = []
            for answer in answers or ():
                if not signatures:
                    verdicts.append(f"the Galaxy API lists no signature ({detail.status_code})")
                elif answer.status != 200:
                    verdicts.append(f"status {answer.status}")
                else:
                    verdicts.append(signing.verify(folder, signatures[0].encode(),
                                                   collection_manifest(answer.body)))
            if answers is None:
                verdicts = ["not asked", "not asked"]
            found.append((f"{filename}: MANIFEST.json, the Galaxy API's signature",
                          verdicts[0], verdicts[1]))
    return found


def collection_manifest(tarball: bytes) -> bytes:
    """``MANIFEST.json`` of a collection tarball (what pulp_ansible signs); empty when the
    bytes are not such a tarball (the signature then fails to verify)."""
    import io
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile("MANIFEST.json")
            return member.read() if member else b""
    except (tarfile.TarError, KeyError, OSError):
        return b""


def _versions() -> str:
    names = ["pulpcore", *(f"pulp-{p}" for p in PLUGINS)]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def plugins_served(stack: stacks.Layout) -> tuple[int, str]:
    """``pulp-content-asgi plugins`` with the stack's settings: its exit status (1 when a
    plugin needs the legacy app) and its table."""
    done = subprocess.run([os.path.join(stacks.BIN, "pulp-content-asgi"), "plugins"],
                          env=stacks.environment(stack), capture_output=True, text=True,
                          check=False)
    return done.returncode, done.stdout.strip()


@dataclass
class Streamed:
    """What a run learnt of streamed remotes: the plugins' refusals
    (``streamed_refused``), the saves found (``probe_all``'s leaks) and the content
    watched (content artifact pk -> declared sha256)."""

    refused: list[tuple[str, str, str, str | None]]
    leaks: list[Leak]
    watched: dict[str, str | None]


def streamed_section(served: list[Served], streamed: Streamed) -> list[str]:
    """The report's "Streamed remotes" section."""
    lines = ["", "## Streamed remotes", "",
             "A `streamed` remote's content is never saved (pulpcore-content: "
             "`save_artifact = remote_artifact.remote.policy != Remote.STREAMED`, "
             "`pulpcore/content/handler.py:1083`; for a pull-through distribution "
             "`… and remote.policy != Remote.STREAMED`, lines 1008-1011, and no content "
             "unit is made). Each app asked for each such file cold "
             "(HEAD, a range, a GET), then again (a second GET, HEAD, ranges, "
             "conditionals). Before each drop of on-demand content for the next app's cold "
             "requests (a drop would hide a save), and once more after both apps stopped, "
             "the database was searched for an artifact of it: one linked to its content "
             "artifact, or an Artifact row (any domain) with the sha256 its remote "
             "artifact declares (a pull-through file, in no table until saved: a content "
             "artifact with an artifact whose remote artifact has the file's upstream URL, "
             "or an Artifact row with the sha256 of the upstream's bytes).", "",
             "| Plugin | Distribution | Files watched (with a declared sha256) | Saved |",
             "|---|---|---|---|"]
    leaked: dict[str, list[str]] = {}
    for since, pks in streamed.leaks:
        for pk in pks:
            leaked.setdefault(pk, []).append(since)
    for one in served:
        if not never_stores(one.policy):
            continue
        found = [f"`{one.path_of(pk)}` " + (
            "by the plugin's sync (dropped before the first cold request), then nothing"
            if since == SYNCED else f"**after {since}**")
                 for pk in one.never_saved for since in leaked.get(pk, ())]
        declared = sum(1 for sha256 in one.never_saved.values() if sha256)
        lines.append(f"| {one.plugin} | `{one.base_path}` | {len(one.never_saved)} "
                     f"({declared}) | {'<br>'.join(found) or 'nothing, by either app'} |")
    if streamed.refused:
        lines += ["", "Plugins whose REST API has no streamed remote, each asked for one "
                  "(`policy: streamed`):", "",
                  "| Plugin | Remote endpoint | API answer | Source | Verdict |",
                  "|---|---|---|---|---|"]
        for plugin, answer, source, why in streamed.refused:
            endpoint = STREAMED_REFUSED[plugin][0]
            lines.append(f"| {plugin} | `{endpoint}` | {answer} | {source} | "
                         f"{why or 'refused, as its source says'} |")
    return lines


def object_storage_section(rows: list[Row], served: list[Served]) -> list[str]:
    """The report's "Object storage" section: the domains, and what the redirects to S3
    came to (``compare``): signatures, Locations, the storage's answers."""
    domains = dict.fromkeys((one.domain, one.storage) for one in served if one.storage)
    if not domains:
        return []
    def redirected(answer: base.Answer) -> bool:
        return s3.is_signed(answer.headers.get("location", ""))

    pairs = [((ours, theirs), diffs) for _, _, ours, theirs, diffs, _ in rows]
    signed = {side: sum(1 for answers, _ in pairs if redirected(answers[index]))
              for side, index in (("asgi", 0), ("legacy", 1))}
    both = [diffs for answers, diffs in pairs if all(map(redirected, answers))]
    followed = [diffs for answers, diffs in pairs if any(map(redirected, answers))]
    bad = sum(1 for _, diffs in pairs for diff in diffs
              if diff.field.endswith("location signature"))
    same_end = sum(1 for diffs in followed
                   if not any(diff.field.startswith("storage ") for diff in diffs))
    endpoint = next((urlsplit(answers[0].headers["location"]).netloc
                     for answers, _ in pairs if redirected(answers[0])), "")
    lines = ["", "## Object storage", "",
             "Domains on S3 (moto's server on loopback"
             + (f", `{endpoint}`" if endpoint else "") + "; `conformance/object_storage.py`), "
             "made through `POST /pulp/default/api/v3/domains/` with `storage_class` "
             f"`{s3.STORAGE_CLASS}`, a bucket each, path-style addressing, signature v4; "
             "Pulp's workers synced and published into them, both apps read, signed and "
             "saved through them:", ""]
    lines += [f"* `{name}`: {storage}, `redirect_to_object_storage` "
              f"{'true' if storage.endswith('redirect') else 'false'}" for name, storage in domains]
    lines += ["", "A signed `Location` differs with each signing, so it is compared without "
              "`X-Amz-Date`, `X-Amz-Signature` and the date in `X-Amz-Credential`, its query "
              "decoded as S3 decodes it (pulpcore-content's `HTTPFound` sends `,` and `/` where "
              "boto3's URL, sent by ours as it is, has `%2C` and `%2F`); each signature is "
              "verified for the request's method with the run's credentials (botocore; moto "
              "checks none), and each redirect is followed at once with the request's method "
              "and headers: both storage answers are compared (`storage <field>`: status, "
              "body, " + ", ".join(s3.FOLLOWED) + "), or, when only one app redirected, the "
              "storage's answer and the other app's (status, body, "
              + ", ".join(s3.FOLLOWED_ONE_SIDE) + "): what the client ends with.", "",
              f"**Redirects to S3: {signed['asgi']} from our app, {signed['legacy']} from "
              f"pulpcore-content; {bad} signatures not valid for the request's method; "
              f"{len(both)} requests both apps redirected, "
              f"{sum(1 for diffs in both if not any(d.field == 'location' for d in diffs))} "
              "with the same Location (without its signing time); "
              f"{len(followed)} followed, {same_end} ending with the same answer.**", ""]
    if any(one.plugin == "container" for one in served if one.storage):
        lines += [f"Container blobs: {REGISTRY_S3} (the \"Front door\" rows above)."]
    return lines


def write_report(path: str, rows: list[Row], served: list[Served], registry: Registry,
                 doors: list[tuple[str, str, str, str | None]], timings: dict[str, float],
                 front: str, plugins: tuple[int, str],
                 signatures: list[tuple[str, str | None, str | None]],
                 streamed: Streamed | None = None, domain: str = "") -> int:
    """The markdown report; returns the number of unexplained differences (front-door
    failures of our app, a plugin needing the legacy app, a streamed file saved and a
    streamed remote a plugin should have refused included)."""
    streamed = streamed or Streamed([], [], {})
    commit = subprocess.run(["git", "-C", stacks.ROOT, "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", stacks.ROOT, "status", "--porcelain", "--", "conformance",
                            "pulp_content_asgi"], capture_output=True, text=True,
                           check=False).stdout.strip()
    unexplained = sum(v == "UNEXPLAINED" for row in rows for v in row[5])
    door_failures = sum(1 for _, _, side, why in doors if why and side == "asgi")
    bad_signatures = sum(1 for _, asgi_why, _ in signatures if asgi_why)
    lines = ["# Plugin parity with pulpcore-content", "",
             f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC at commit "
             f"`{commit}`" + (" (with uncommitted changes)" if dirty else "")
             + " by `conformance/parity_plugins.py` (`make parity-plugins`); "
             + _versions() + ".", "",
             "Each plugin's content was created through the stack's REST API: a remote on "
             "a local upstream built at run time (conformance/fixtures/), a repository "
             "synced with the `immediate` and with the `on_demand` policy (and `streamed` "
             "where the plugin offers it: rpm, deb, python, npm, gem, container; rpm and deb "
             "also a signed repository, `signed`, with a signing "
             "service on a key made at run time), pull-through distributions (maven, it has "
             "no sync; python, npm, container; python and npm also on a `streamed` remote, "
             "`pull_through_streamed`), ansible a collection uploaded, one "
             "synced from a Galaxy v3 upstream (`immediate`: pulp_ansible has no on-demand "
             "collections; its cold requests meet it with the artifact dropped) and one "
             "uploaded and signed in its repository (`signed`, the same key), "
             "a publication where the plugin publishes (rpm, deb, python, gem), a "
             "distribution. Each request "
             "went byte for byte to our app and to pulpcore-content (one process each, the "
             "stack's database and settings, each on its own Redis database). Pass \"ours "
             "first\" asks our app first, \"theirs first\" pulpcore-content first. "
             "Requests marked *cold* meet on-demand or pull-through content nothing has "
             "fetched: before each app's cold requests their artifacts were dropped as "
             "pulpcore's reclaim task (pull-through: the orphan cleanup) drops them (and "
             "the pair's cache entries forgotten), so each app "
             "streams from the upstream itself; whether it saved the artifact afterwards "
             "is compared too. The other requests meet the artifact the second app saved. "
             "Compared: status, "
             + ", ".join(COMPARED) + " by value, and the body bytes; container blobs must "
             "also hash to their digest and name it in Docker-Content-Digest.", "",
             *([f"`DOMAIN_ENABLED` stack: everything was made in the domain `{domain}` "
                f"through its API root `/pulp/{domain}/api/v3/` (storage: FileSystem in "
                "MEDIA_ROOT, as the default domain's) and asked under "
                f"`{stacks.PREFIX}{domain}/<base path>/`, container blobs under "
                f"`/pulp/container/{domain}/<path>/blobs/`; each plugin's first file also "
                "in the default domain and in an unknown one (requests labelled *domain:*)"
                + (". Besides, " + ", ".join(sorted({o.plugin for o in served if o.storage}))
                   + " content (`immediate`, `on_demand`) in two domains on S3, one "
                   "redirecting to it and one proxying it (requests labelled *[S3 "
                   "redirect]*, *[S3 proxy]*; section \"Object storage\")."
                   if any(o.storage for o in served) else "."),
                ""] if domain else []),
             "Time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in
                                  timings.items()) + ".", "",
             f"**{len(rows)} requests: {sum(1 for r in rows if not r[4])} identical, "
             f"{sum(1 for r in rows if r[4])} different, {unexplained} unexplained "
             f"differences; front door: {len(doors)} downloads, {door_failures} failed "
             f"through our app; streamed: {len(streamed.watched)} files watched, "
             f"{len({pk for since, pks in streamed.leaks if since != SYNCED for pk in pks})} "
             "found saved by an app.**", "",
             "| Plugin | Requests | Identical | Different | Unexplained |", "|---|---|---|---|---|"]
    for plugin, storage in dict.fromkeys((one.plugin, one.storage) for one in served):
        mine = [row for row in rows if (row[1].plugin, row[1].storage) == (plugin, storage)]
        shown = plugin + (f" [{storage}]" if storage else "")
        lines.append(f"| {shown} | {len(mine)} | {sum(1 for r in mine if not r[4])} | "
                     f"{sum(1 for r in mine if r[4])} | "
                     f"{sum(v == 'UNEXPLAINED' for r in mine for v in r[5])} |")
    lines += ["", f"`pulp-content-asgi plugins` on the stack (exit {plugins[0]}"
              + ("; 1: a plugin needs the legacy app" if plugins[0] else "") + "):", "",
              "```", plugins[1], "```"]
    lines += ["", "## Distributions", "",
              "| Plugin | Policy | Base path | Upstream | Served paths |", "|---|---|---|---|---|"]
    for one in served:
        shown = "<br>".join(f"`{p}`" for p in (one.files or one.blobs))
        lines.append(f"| {one.plugin} | {one.policy}"
                     + (f" [{one.storage}] (`{one.domain}`)" if one.storage else "")
                     + f" | `{one.base_path}` | `{one.upstream.url}` | {shown} |")
    if doors:
        lines += ["", "## Front door: the APIs' redirects through nginx", "",
                  "`GET /v2/<name>/blobs/<digest>` on pulpcore-api (bearer token from "
                  "`/token/`) and the Galaxy API's collection download "
                  "(`/pulp_ansible/galaxy/<base path>/api/v3/plugin/ansible/content/<base "
                  "path>/collections/artifacts/<file>`, Basic auth) through the stack's "
                  "nginx, then each redirect followed through nginx, whose content locations "
                  f"(`{stacks.PREFIX}`, pulp_container's `/pulp/container/`) go to "
                  f"**{front}**.", "",
                  "| File | API answer | Content app answer |", "|---|---|---|"]
        for label, api_answer, _side, why in doors:
            lines.append(f"| {label} | {api_answer} | {why or 'exact bytes'}"
                         + (", Docker-Content-Digest" if "container" in label and not why
                            else "") + " |")
    lines += object_storage_section(rows, served)
    lines += streamed_section(served, streamed)
    if signatures:
        lines += ["", "## Signatures", "",
                  "Each signature file of the signed distributions as each app served it "
                  "(pass \"ours first\"), verified with gpg against the run's key (detached "
                  "ones with the signed file as the same app served it); each signed "
                  "collection as `ansible-galaxy` checks it: the signature pulpcore-api's "
                  "Galaxy API lists with the collection version, against `MANIFEST.json` of "
                  "the tarball as each app served it.", "",
                  "| File | asgi | legacy |", "|---|---|---|"]
        for label, asgi_why, legacy_why in signatures:
            lines.append(f"| `{label}` | {asgi_why or 'valid'} | {legacy_why or 'valid'} |")
    for plugin in dict.fromkeys(one.plugin for one in served):
        lines += ["", f"## {plugin}", "",
                  "| Pass | Request | Method | asgi | legacy | X-PULP-CACHE asgi / legacy "
                  "| Differences → verdict |", "|---|---|---|---|---|---|---|"]
        for name, probe, ours, theirs, diffs, texts in rows:
            if probe.plugin != plugin:
                continue
            shown = "<br>".join(f"`{base._escape(str(d))}` → {v}"
                                for d, v in zip(diffs, texts, strict=True)) or "identical"
            cache = " / ".join(a.headers.get("x-pulp-cache", "-") for a in (ours, theirs))
            label = probe.label.split(": ", 1)[-1]
            where = probe.policy + (f" [{probe.storage}]" if probe.storage else "")
            lines.append(f"| {name} | {where}: {base._escape(label)} "
                         f"`{base._escape(probe.path[-48:])}` | {probe.method} | {ours.status} "
                         f"| {theirs.status} | {cache} | {shown} |")
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    streamed_failures = (sum(1 for since, _ in streamed.leaks if since != SYNCED)
                         + sum(1 for *_, why in streamed.refused if why))
    return (unexplained + door_failures + bad_signatures + (1 if plugins[0] else 0)
            + streamed_failures)


def make_domain(origin: str, name: str) -> str:
    """A domain storing its artifacts in MEDIA_ROOT as the default domain does, made
    through the default domain's API (``POST /pulp/default/api/v3/domains/``); its API
    root."""
    import django

    django.setup()
    from django.conf import settings

    PulpApi(origin, "/pulp/default/api/v3/").post("domains/", {
        "name": name, "storage_class": "pulpcore.app.models.storage.FileSystem",
        "storage_settings": {"location": settings.MEDIA_ROOT}})
    return f"/pulp/{name}/api/v3/"


def make_s3_domain(origin: str, name: str, endpoint: str, redirect: bool) -> str:
    """A domain on S3 (``object_storage``: a bucket of its own on moto's server), made
    through the default domain's API as ``make_domain``; its API root."""
    bucket = name.replace("domain-", "parity-")
    s3.make_bucket(endpoint, bucket)
    PulpApi(origin, "/pulp/default/api/v3/").post("domains/", {
        "name": name, "storage_class": s3.STORAGE_CLASS,
        "storage_settings": s3.storage_settings(endpoint, bucket),
        "redirect_to_object_storage": redirect})
    return f"/pulp/{name}/api/v3/"


def on_object_storage(origin: str, endpoint: str,
                      upstreams: dict[tuple[str, str], fixtures.Upstream], plugins: list[str],
                      unique: str, domain: str) -> list[Served]:
    """``object_storage.DOMAINS`` (``<domain>-s3-redirect``, ``<domain>-s3-proxy``), each
    with its plugins' ``object_storage.POLICIES`` distributions (``create``)."""
    wanted = {key: upstream for key, upstream in upstreams.items()
              if key[0] in plugins and key[1] in s3.POLICIES}
    found = []
    for suffix, redirect in s3.DOMAINS:
        name = f"{domain}-{suffix}"
        made = create(PulpApi(origin, make_s3_domain(origin, name, endpoint, redirect)),
                      wanted, plugins, unique, None, name)
        for one in made:
            one.storage = "S3 redirect" if redirect else "S3 proxy"
        found += made
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", help="default: conformance/parity-plugins.md, "
                        "with --domains conformance/parity-plugins-domains.md")
    parser.add_argument("--plugins", default=",".join(PLUGINS),
                        help=f"a comma-separated subset of {','.join(PLUGINS)}")
    parser.add_argument("--domains", action="store_true",
                        help="on the DOMAIN_ENABLED stack, everything made in a domain of "
                        "its own")
    parser.add_argument("--object-storage", default=",".join(s3.PLUGINS),
                        help="with --domains: the plugins also made in the domains on "
                        f"object storage, a comma-separated subset of {','.join(s3.PLUGINS)} "
                        "('' for none)")
    args = parser.parse_args()
    args.report = args.report or os.path.join(
        stacks.ROOT, "conformance",
        "parity-plugins-domains.md" if args.domains else "parity-plugins.md")
    plugins = [p for p in args.plugins.split(",") if p]
    if unknown := set(plugins) - set(PLUGINS):
        raise SystemExit(f"unknown plugins: {sorted(unknown)}")
    on_s3 = [p for p in args.object_storage.split(",") if p] if args.domains else []
    if unknown := set(on_s3) - set(s3.PLUGINS):
        raise SystemExit(f"unknown object-storage plugins: {sorted(unknown)}")
    stack = stacks.layout(args.domains)
    timings: dict[str, float] = {}
    began = time.monotonic()
    started = stacks.ensure_up(stack)
    timings["stack"] = time.monotonic() - began
    unique = uuid.uuid4().hex[:6]
    signers = os.path.join(stack.path("fixtures"), "signing")
    try:
        with open(stack.path("content-upstream")) as source:
            front = source.read().split()[0]
        how_served = plugins_served(stack)
        phase = time.monotonic()
        with fixtures.serve(stack.path("fixtures"), stack.nginx + FIXTURE_OFFSET["http"],
                            stack.nginx + FIXTURE_OFFSET["registry"], unique) as upstreams, \
                contextlib.ExitStack() as running:
            timings["fixtures"] = time.monotonic() - phase
            phase = time.monotonic()
            domain = f"domain-{unique}" if args.domains else ""
            api = PulpApi(stack.origin, make_domain(stack.origin, domain) if domain else API)
            signing_hrefs = {plugin: api.get(f"{api.root}signing-services/?name={name}")
                             ["results"][0]["pulp_href"] for plugin, name in
                             signing.services(stack, signers, unique, [
                                 plugin for (plugin, policy) in upstreams
                                 if policy == "signed" and plugin in plugins]).items()}
            served = create(api, upstreams, plugins, unique, signing_hrefs, domain)
            if on_s3:
                endpoint = running.enter_context(s3.serve(
                    stack.nginx + FIXTURE_OFFSET["s3"], stack.path("logs")))
                served += on_object_storage(stack.origin, endpoint, upstreams, on_s3, unique,
                                            domain)
            refused = streamed_refused(api, plugins, unique)
            registry = Registry(stack.origin)
            learn_pulled(api, registry, served)
            timings["REST API: remotes, syncs, publications, distributions"] = (
                time.monotonic() - phase)
            discover(served)
            probes = [p for one in served for p in probes_for(one, registry.redirect)]
            probes += domain_probes(served)
            never = {pk: sha256 for one in served for pk, sha256 in one.never_saved.items()}
            phase = time.monotonic()
            pair = base.start_pair(stack)
            try:
                rows, leaks = probe_all(probes, pair, f"127.0.0.1:{stack.nginx}",
                                        {key for one in served for key in one.saves},
                                        lambda: forget(served, stack.redis, base.REDIS_DBS),
                                        lambda: forget_pulled(api), never)
            finally:
                base.stop_pair(pair)
            if never and (found := streamed_saved(never)):  # a save finished late
                leaks.append(("pass theirs first: both apps' other requests (looked for "
                              "after both apps stopped)", sorted(found)))
            signatures = check_signatures(rows, signers) + check_collection_signatures(
                rows, served, registry, signers)
            doors = []
            for one in served:
                for key, digest in one.downloads.items():
                    # A fresh redirect (the API answers for the file as it is now).
                    target = registry.redirect(one, key)
                    status, location = registry.seen[(one.content_base, key)]
                    doors.append((f"{one.who} `{key[:26]}…`",
                                  f"{status} → `{urlsplit(location).path}`" if location else
                                  f"{status} (pulp_container's bug, section \"Object "
                                  "storage\"): the content app's URL signed here", front,
                                  door_check(registry.front_door(target), digest,
                                             one.plugin == "container")))
            timings["requests"] = time.monotonic() - phase
    finally:
        signing.stop(signers)
        if started:
            stacks.down(stack)
    timings["total"] = time.monotonic() - began
    failures = write_report(args.report, rows, served, registry, doors, timings, front,
                            how_served, signatures, Streamed(refused, leaks, never), domain)
    for name, probe, _ours, _theirs, diffs, texts in rows:
        for diff, text in zip(diffs, texts, strict=True):
            if text == "UNEXPLAINED":
                print(f"UNEXPLAINED {name}: {probe.label} {probe.method} {probe.path[:90]}: "
                      f"{str(diff)[:200]}")
    print(f"Plugin parity: {len(rows)} requests, {sum(1 for r in rows if not r[4])} identical, "
          f"{failures} unexplained differences or failed pulls; {args.report} "
          f"({timings['total']:.0f} s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
