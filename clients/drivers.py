"""One function per real client: it fetches a package the way its users do, in a private
state directory, and says what it got.

Every driver isolates the client from the machine's own configuration (dnf's Debian
defaults, apt's ``/etc/apt``, pip's global config and ``PIP_FIND_LINKS``, npm's cache,
gem's and Maven's HOME and settings, ansible's config and cache, podman's storage), so a
pass can only come from the server under test. The traps are described in
``clients/README.md``. A driver never raises for a client failure: the outcome carries
the exit status and the client's own words.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

#: Seconds a client may take before it counts as failed (tiny packages on loopback).
TIMEOUT = 180


@dataclass
class Outcome:
    """What one client run produced."""

    client: str
    ok: bool
    detail: str  # the client's last words on failure; what was checked on success
    files: dict[str, str] = field(default_factory=dict)  # file name → sha256 of what it got
    seconds: float = 0.0


def sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _run(argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as late:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {late.timeout} s")


def _tail(done: subprocess.CompletedProcess[str], lines: int = 6) -> str:
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return f"exit {done.returncode}: " + " | ".join(text[-lines:])


def _fresh(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _digests(folder: str, pattern: str = "*") -> dict[str, str]:
    return {os.path.basename(p): sha256(p) for p in sorted(glob.glob(os.path.join(folder, pattern)))
            if os.path.isfile(p)}


def _timed(client: str, started: float, ok: bool, detail: str,
           files: dict[str, str] | None = None) -> Outcome:
    return Outcome(client, ok, detail, files or {}, round(time.monotonic() - started, 2))


# --- dnf ------------------------------------------------------------------------------

_DNF = ["dnf", "-y", "-q", "--nogpgcheck", "--setopt=skip_if_unavailable=False",
        "--setopt=metadata_expire=0", "--releasever=1"]


def dnf(baseurl: str, package: str, workdir: str, config_repo: bool = False) -> Outcome:
    """``dnf install`` into an empty installroot, then ``dnf download`` of the same package.

    ``config_repo``: take the repository from ``<baseurl>config.repo`` (pulp_rpm's
    generated .repo file) instead of ``--repofrompath``.
    """
    started = time.monotonic()
    name = "dnf (config.repo)" if config_repo else "dnf"
    root = _fresh(workdir, "root")
    cache = _fresh(workdir, "cache")
    repos = _fresh(workdir, "repos")
    if config_repo:
        fetched = _run(["curl", "-sSf", "-o", os.path.join(repos, "pulp.repo"),
                        f"{baseurl}config.repo"])
        if fetched.returncode:
            return _timed(name, started, False, "config.repo: " + _tail(fetched))
        source = [f"--setopt=reposdir={repos}"]
    else:
        source = ["--setopt=reposdir=/dev/null", f"--repofrompath=pulp,{baseurl}",
                  "--repo=pulp"]
    common = [*_DNF, f"--setopt=cachedir={cache}", f"--installroot={root}", *source]
    done = _run([*common, "install", package])
    if done.returncode:
        return _timed(name, started, False, "install: " + _tail(done))
    query = _run(["rpm", "--root", root, "-q", package])
    if query.returncode:
        return _timed(name, started, False, "rpm -q after install: " + _tail(query))
    downloads = _fresh(workdir, "downloads")
    got = _run([*common, "download", f"--destdir={downloads}", package])
    if got.returncode:
        return _timed(name, started, False, "download: " + _tail(got))
    return _timed(name, started, True, f"installed {query.stdout.strip()}",
                  _digests(downloads, "*.rpm"))


# --- apt --------------------------------------------------------------------------------

_APT_CONF = """\
Dir::Etc::parts "{a}/parts"; Dir::Etc::main "/dev/null";
Dir::Etc::sourcelist "{a}/sources.list"; Dir::Etc::sourceparts "-";
Dir::Etc::preferences "{a}/parts/none"; Dir::Etc::preferencesparts "{a}/parts";
Dir::State "{a}/state"; Dir::State::status "{a}/state/status"; Dir::Cache "{a}/cache";
Debug::NoLocking "1"; APT::Sandbox::User "root"; APT::Architecture "amd64";
Acquire::Retries "0";
"""


def apt(url: str, distribution: str, component: str, package: str, workdir: str) -> Outcome:
    """``apt-get update`` and ``apt-get download`` with a private APT_CONFIG."""
    started = time.monotonic()
    state = _fresh(workdir, "apt")
    for sub in ("state/lists/partial", "cache/archives/partial", "parts"):
        os.makedirs(os.path.join(state, sub))
    open(os.path.join(state, "state", "status"), "w").close()
    with open(os.path.join(state, "sources.list"), "w") as out:
        out.write(f"deb [trusted=yes] {url} {distribution} {component}\n")
    with open(os.path.join(state, "apt.conf"), "w") as out:
        out.write(_APT_CONF.format(a=state))
    env = {**os.environ, "APT_CONFIG": os.path.join(state, "apt.conf")}
    done = _run(["apt-get", "-q", "update"], env=env)
    if done.returncode or "W: " in done.stderr or "E: " in done.stderr:
        return _timed("apt", started, False, "update: " + _tail(done))
    downloads = _fresh(workdir, "downloads")
    got = _run(["apt-get", "-q", "download", package], cwd=downloads, env=env)
    if got.returncode:
        return _timed("apt", started, False, "download: " + _tail(got))
    return _timed("apt", started, True, "update and download", _digests(downloads, "*.deb"))


# --- pip --------------------------------------------------------------------------------

def pip(index_url: str, package: str, workdir: str) -> Outcome:
    """``pip install --isolated`` into a target folder, then ``pip download`` of the same."""
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    common = ["--isolated", "--no-cache-dir", "--disable-pip-version-check", "--no-deps",
              "--index-url", index_url]
    target = _fresh(workdir, "site")
    done = _run(["/usr/bin/python3", "-m", "pip", "install", *common, "--target", target,
                 package], env=env)
    if done.returncode:
        return _timed("pip", started, False, "install: " + _tail(done))
    downloads = _fresh(workdir, "downloads")
    got = _run(["/usr/bin/python3", "-m", "pip", "download", *common, "-d", downloads,
                package], env=env)
    if got.returncode:
        return _timed("pip", started, False, "download: " + _tail(got))
    return _timed("pip", started, True, "install and download", _digests(downloads))


# --- skopeo -------------------------------------------------------------------------------

def skopeo(reference: str, workdir: str) -> Outcome:
    """``skopeo copy docker://<reference> oci:…`` over plain HTTP; the files are the
    image's blobs (by digest), which skopeo verified on the way."""
    started = time.monotonic()
    layout = _fresh(workdir, "oci")
    done = _run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reference}",
                 f"oci:{layout}:pulled"])
    if done.returncode:
        return _timed("skopeo", started, False, "copy: " + _tail(done))
    blobs = os.path.join(layout, "blobs", "sha256")
    files = _digests(blobs)
    wrong = [name for name, digest in files.items() if name != digest]
    if wrong:
        return _timed("skopeo", started, False, f"blobs not matching their digest: {wrong}")
    return _timed("skopeo", started, True, f"copied {len(files)} blobs", files)


# --- npm --------------------------------------------------------------------------------

def npm(registry: str, package: str, workdir: str) -> Outcome:
    """``npm install --registry`` into an empty project with a private cache."""
    started = time.monotonic()
    project = _fresh(workdir, "project")
    cache = _fresh(workdir, "npm-cache")
    with open(os.path.join(project, "package.json"), "w") as out:
        json.dump({"name": "client-check", "version": "1.0.0", "private": True}, out)
    done = _run(["npm", "install", "--no-audit", "--no-fund", "--cache", cache,
                 "--registry", registry, package], cwd=project)
    if done.returncode:
        return _timed("npm", started, False, "install: " + _tail(done))
    manifest = os.path.join(project, "node_modules", package, "package.json")
    if not os.path.exists(manifest):
        return _timed("npm", started, False, f"{manifest} missing after install")
    with open(os.path.join(project, "package-lock.json")) as lock:
        entry = json.load(lock)["packages"][f"node_modules/{package}"]
    # npm leaves "resolved" out for tarballs under the registry's own URL.
    tarball = os.path.basename(entry.get("resolved") or f"{package}-{entry['version']}.tgz")
    return _timed("npm", started, True, f"installed {entry['version']}, integrity checked",
                  {tarball: entry.get("integrity", "none")})


# --- gem --------------------------------------------------------------------------------

def gem(source: str, package: str, workdir: str) -> Outcome:
    """``gem install --clear-sources --source <distribution>`` into a private install
    dir, with HOME, GEM_HOME and GEM_PATH isolated (no ~/.gemrc, no gems of the machine);
    the files are the ``.gem`` files it fetched into its cache."""
    started = time.monotonic()
    home = _fresh(workdir, "home")
    install = _fresh(workdir, "gems")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEM_", "BUNDLE_"))}
    env.update(HOME=home, GEM_HOME=install, GEM_PATH=install)
    done = _run(["gem", "install", "--norc", "--clear-sources", "--source", source,
                 "--install-dir", install, "--no-document", "--ignore-dependencies",
                 package], env=env)
    if done.returncode:
        return _timed("gem", started, False, "install: " + _tail(done))
    if not glob.glob(os.path.join(install, "gems", f"{package}-*")):
        return _timed("gem", started, False, f"{package} not installed in {install}")
    return _timed("gem", started, True, "installed", _digests(os.path.join(install, "cache"),
                                                               "*.gem"))


# --- mvn ----------------------------------------------------------------------------------

#: The only mirror is the distribution; the dependency plugin (not the artifact) comes from
#: Debian's packaged Maven repository, a file:// plugin repository the mirror leaves out.
#: ``central`` is redefined to fail on a checksum mismatch (Maven's default only warns).
_MAVEN_SETTINGS = """\
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
  <localRepository>{local}</localRepository>
  <interactiveMode>false</interactiveMode>
  <mirrors>
    <mirror><id>pulp</id><url>{url}</url><mirrorOf>*,!debian</mirrorOf></mirror>
  </mirrors>
  <profiles><profile><id>offline</id>
    <repositories><repository><id>central</id><url>https://repo.maven.apache.org/maven2</url>
      <releases><checksumPolicy>fail</checksumPolicy></releases>
      <snapshots><enabled>false</enabled></snapshots></repository></repositories>
    <pluginRepositories><pluginRepository><id>debian</id><url>file://{plugins}</url>
      <releases><checksumPolicy>ignore</checksumPolicy></releases>
      <snapshots><enabled>false</enabled></snapshots></pluginRepository></pluginRepositories>
  </profile></profiles>
  <activeProfiles><activeProfile>offline</activeProfile></activeProfiles>
</settings>
"""
#: Debian's maven-dependency-plugin (libmaven-dependency-plugin-java) and where it lives.
MAVEN_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.5.0:get"
MAVEN_REPO = "/usr/share/maven-repo"


def mvn(url: str, group: str, artifact: str, version: str, workdir: str) -> Outcome:
    """``mvn dependency:get`` of ``group:artifact:version`` with a private settings.xml
    (global settings emptied, HOME and the local repository private); the files are the
    jar and pom it put in its local repository."""
    started = time.monotonic()
    home = _fresh(workdir, "home")
    local = _fresh(workdir, "m2")
    settings = os.path.join(home, "settings.xml")
    with open(settings, "w") as out:
        out.write(_MAVEN_SETTINGS.format(local=local, url=url, plugins=MAVEN_REPO))
    empty = os.path.join(home, "global-settings.xml")
    with open(empty, "w") as out:
        out.write("<settings/>\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAVEN_", "M2_"))}
    env["HOME"] = home
    done = _run(["mvn", "-B", "-ntp", "-s", settings, "-gs", empty, MAVEN_PLUGIN,
                 f"-Dartifact={group}:{artifact}:{version}"], cwd=home, env=env)
    if done.returncode:
        errors = [line for line in done.stdout.splitlines() if line.startswith("[ERROR]")]
        return _timed("mvn", started, False, f"exit {done.returncode}: "
                      + " | ".join(errors[:3] or done.stdout.splitlines()[-6:]))
    folder = os.path.join(local, *group.split("."), artifact, version)
    files = {**_digests(folder, "*.jar"), **_digests(folder, "*.pom")}
    return _timed("mvn", started, True, "dependency:get resolved", files)


# --- ansible-galaxy ----------------------------------------------------------------------

def ansible_galaxy(galaxy: str, server: str, collection: str, version: str,
                   credentials: tuple[str, str], workdir: str) -> Outcome:
    """``ansible-galaxy collection install`` then ``collection download`` from the Galaxy
    API at ``server`` (Basic auth: pulp_ansible's v3 API wants an authenticated user),
    configured only through the environment (private HOME, ansible.cfg and cache); the
    files are the downloaded collection tarballs. ``galaxy``: the executable."""
    started = time.monotonic()
    home = _fresh(workdir, "home")
    config = os.path.join(home, "ansible.cfg")
    open(config, "w").close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=home, ANSIBLE_CONFIG=config,
               ANSIBLE_GALAXY_CACHE_DIR=os.path.join(home, "cache"),
               ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"),
               ANSIBLE_GALAXY_SERVER_LIST="pulp", ANSIBLE_GALAXY_SERVER_PULP_URL=server,
               ANSIBLE_GALAXY_SERVER_PULP_USERNAME=credentials[0],
               ANSIBLE_GALAXY_SERVER_PULP_PASSWORD=credentials[1])
    wanted = f"{collection}:{version}"
    install = _fresh(workdir, "collections")
    done = _run([galaxy, "collection", "install", "--no-cache", "-p", install, wanted],
                env=env)
    if done.returncode:
        return _timed("ansible-galaxy", started, False, "install: " + _tail(done))
    manifest = os.path.join(install, "ansible_collections", *collection.split("."),
                            "MANIFEST.json")
    try:
        with open(manifest) as source:
            installed = json.load(source)["collection_info"]["version"]
    except (OSError, ValueError, KeyError) as error:
        return _timed("ansible-galaxy", started, False, f"installed manifest: {error}")
    if installed != version:
        return _timed("ansible-galaxy", started, False, f"installed {installed}, not {version}")
    downloads = _fresh(workdir, "downloads")
    got = _run([galaxy, "collection", "download", "--no-cache", "-p", downloads, wanted],
               env=env)
    if got.returncode:
        return _timed("ansible-galaxy", started, False, "download: " + _tail(got))
    return _timed("ansible-galaxy", started, True, f"installed {collection} {installed} "
                  "and downloaded", _digests(downloads, "*.tar.gz"))


# --- ostree ------------------------------------------------------------------------------

def ostree(url: str, ref: str, path: str, workdir: str) -> Outcome:
    """``ostree pull`` of ``ref`` into an empty archive repository (remote without GPG
    verification: the fixture is unsigned), then a checkout; the files are the pulled
    commit's checksum (``commit``) and the sha256 of ``path`` in the checkout."""
    started = time.monotonic()
    repo = _fresh(workdir, "repo")
    base = ["ostree", f"--repo={repo}"]
    for step, argv in (("init", [*base, "init", "--mode=archive"]),
                       ("remote add", [*base, "remote", "add", "--no-gpg-verify", "pulp", url]),
                       ("pull", [*base, "pull", "pulp", ref])):
        done = _run(argv)
        if done.returncode:
            return _timed("ostree", started, False, f"{step}: " + _tail(done))
    commit = _run([*base, "rev-parse", f"pulp:{ref}"])
    checkout = os.path.join(workdir, "checkout")
    shutil.rmtree(checkout, ignore_errors=True)
    done = _run([*base, "checkout", "-U", f"pulp:{ref}", checkout])
    if commit.returncode or done.returncode:
        return _timed("ostree", started, False, "checkout: " + _tail(done if done.returncode
                                                                      else commit))
    target = os.path.join(checkout, path)
    if not os.path.isfile(target):
        return _timed("ostree", started, False, f"{path} missing from the checkout")
    return _timed("ostree", started, True, "pulled and checked out",
                  {"commit": commit.stdout.strip(), path: sha256(target)})


# --- podman ------------------------------------------------------------------------------

def podman(reference: str, path: str, workdir: str) -> Outcome:
    """``podman pull`` (rootful, vfs storage, its own root, runroot and tmpdir, an empty
    registries.conf) over plain HTTP, then the image mounted; the files are the image's
    manifest digest (``manifest``) and the sha256 of ``path`` in the mounted image."""
    started = time.monotonic()
    store = _fresh(workdir, "podman")
    os.makedirs(os.path.join(store, "tmp"))
    # podman refuses a runroot longer than 50 characters: a short one under /tmp.
    runroot = tempfile.mkdtemp(prefix="podman-run-", dir="/tmp")
    try:
        return _podman(reference, path, store, runroot, started)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def _podman(reference: str, path: str, store: str, runroot: str, started: float) -> Outcome:
    registries = os.path.join(store, "registries.conf")
    open(registries, "w").close()
    env = {**os.environ, "TMPDIR": os.path.join(store, "tmp"),
           "CONTAINERS_REGISTRIES_CONF": registries}
    base = ["podman", f"--root={store}/root", f"--runroot={runroot}",
            "--storage-driver=vfs", "--cgroup-manager=cgroupfs", "--events-backend=none",
            f"--tmpdir={store}/tmp"]
    done = _run([*base, "pull", "-q", "--tls-verify=false", reference], env=env)
    if done.returncode:
        return _timed("podman", started, False, "pull: " + _tail(done))
    digest = _run([*base, "image", "inspect", "--format", "{{.Digest}}", reference], env=env)
    mounted = _run([*base, "image", "mount", reference], env=env)
    if digest.returncode or mounted.returncode:
        return _timed("podman", started, False, "inspect/mount: "
                      + _tail(mounted if mounted.returncode else digest))
    try:
        target = os.path.join(mounted.stdout.strip(), path)
        files = {"manifest": digest.stdout.strip(),
                 path: sha256(target) if os.path.isfile(target) else "missing"}
    finally:
        _run([*base, "image", "unmount", reference], env=env)
    return _timed("podman", started, True, "pulled and mounted", files)


# --- curl and aria2c (resumable and parallel ranges) ----------------------------------------

def curl_resume(url: str, workdir: str, expected: str) -> Outcome:
    """``curl -C -`` continuing a file cut after its first 1000 bytes; the whole file's
    digest must be ``expected``."""
    started = time.monotonic()
    folder = _fresh(workdir, "curl")
    target = os.path.join(folder, "file")
    head = _run(["curl", "-sSf", "-r", "0-999", "-o", target, url])
    if head.returncode:
        return _timed("curl -C -", started, False, "first part: " + _tail(head))
    done = _run(["curl", "-sSf", "-C", "-", "-o", target, url])
    if done.returncode:
        return _timed("curl -C -", started, False, "resume: " + _tail(done))
    got = sha256(target)
    return _timed("curl -C -", started, got == expected,
                  "resumed" if got == expected else f"digest {got} != {expected}",
                  {"file": got})


def aria2c(url: str, workdir: str, expected: str) -> Outcome:
    """``aria2c -x4 -s4`` (four ranged connections) with the expected digest checked."""
    started = time.monotonic()
    folder = _fresh(workdir, "aria2c")
    done = _run(["aria2c", "-q", "-x4", "-s4", "-k1M", "--min-split-size=1M",
                 "--file-allocation=none", f"--checksum=sha-256={expected}", "-d", folder,
                 "-o", "file", url])
    if done.returncode:
        return _timed("aria2c -x4", started, False, _tail(done))
    return _timed("aria2c -x4", started, True, "4 connections, checksum verified",
                  {"file": sha256(os.path.join(folder, "file"))})


# --- zckdl (zchunk: the changed chunks only, several ranges per request) ------------------

def zckdl(url: str, seed: str, workdir: str, expected: str) -> Outcome:
    """``zckdl --fail-no-ranges -s <seed>``: zchunk's downloader, given the older version a
    client already has, reads the file's header by a range, then asks for only the chunks
    the seed lacks, several ranges per request (as librepo does for dnf's zchunk
    metadata). Passes when the result's sha256 is ``expected`` and fewer bytes than the
    whole file crossed the wire (the delta was taken, not a full download)."""
    started = time.monotonic()
    folder = _fresh(workdir, "zckdl")
    done = _run(["zckdl", "--fail-no-ranges", "-s", seed, url], cwd=folder)
    target = os.path.join(folder, os.path.basename(url))
    if done.returncode or not os.path.isfile(target):
        return _timed("zckdl", started, False, _tail(done))
    got = sha256(target)
    fetched = re.search(r"Downloaded (\d+) bytes", done.stdout + done.stderr)
    whole = os.path.getsize(target)
    if got != expected:
        return _timed("zckdl", started, False, f"digest {got} != {expected}", {"file": got})
    if fetched is None or int(fetched.group(1)) >= whole:
        return _timed("zckdl", started, False, "no delta: "
                      f"{fetched.group(1) if fetched else '?'} of {whole} bytes fetched",
                      {"file": got})
    return _timed("zckdl", started, True, f"delta of {fetched.group(1)} of {whole} bytes, "
                  "checksums verified", {"file": got})
