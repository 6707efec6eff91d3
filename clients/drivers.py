"""One function per real client: it fetches a package the way its users do, in a private
state directory, and says what it got.

Every driver isolates the client from the machine's own configuration (dnf's Debian
defaults, apt's ``/etc/apt``, pip's global config and ``PIP_FIND_LINKS``, npm's cache),
so a pass can only come from the server under test. The traps are described in
``clients/README.md``. A driver never raises for a client failure: the outcome carries
the exit status and the client's own words.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
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
