"""Signing services for signed repositories: a GPG key made at run time in a GNUPGHOME of
its own, the scripts pulp_deb, pulp_rpm and pulp_ansible call, registered with ``pulpcore-manager
add-signing-service`` (pulpcore's command, which validates each by signing a test file
and checking the signature with the key's public half).

    hrefs = signing.services(stack, folder, run_id)  # {"deb": href, "rpm": href}

The script contracts (the plugins' ``SigningService.validate``):

* pulp_deb, ``deb:AptReleaseSigningService``: called with a ``Release`` file, writes
  ``InRelease`` (clear-signed) and ``Release.gpg`` (detached, armored) into
  ``$PULP_TEMP_WORKING_DIR`` and prints ``{"signatures": {"inline": …, "detached": …}}``;
* pulp_rpm, ``core:AsciiArmoredDetachedSigningService`` (a repository's
  ``metadata_signing_service``): called with ``repomd.xml``, writes ``repomd.xml.asc``
  beside it and prints ``{"file": …, "signature": …}``; the publication also gets
  ``repomd.xml.key``, the service's public key;
* pulp_ansible, the same class and script (a repository's ``sign`` task): called with a
  collection's ``MANIFEST.json``, its ``.asc`` becomes a ``CollectionVersionSignature``
  the Galaxy API lists with the collection version.

The workers run the scripts: each names its GNUPGHOME itself.
"""

from __future__ import annotations

import os
import subprocess

from conformance import stack as stacks
from conformance.fixtures import run, tool

DEB_SCRIPT = """\
#!/bin/sh
# pulp_deb's Release signing (conformance/signing.py): InRelease and Release.gpg.
set -e
export GNUPGHOME='{home}'
out="${{PULP_TEMP_WORKING_DIR:-$(dirname "$1")}}"
gpg --batch --yes --pinentry-mode loopback --passphrase '' --local-user '{key}' \\
    --armor --detach-sign --output "$out/Release.gpg" "$1"
gpg --batch --yes --pinentry-mode loopback --passphrase '' --local-user '{key}' \\
    --clearsign --output "$out/InRelease" "$1"
printf '{{"signatures": {{"inline": "%s", "detached": "%s"}}}}\\n' \\
    "$out/InRelease" "$out/Release.gpg"
"""

RPM_SCRIPT = """\
#!/bin/sh
# pulp_rpm's repomd.xml signing (conformance/signing.py): a detached armored signature.
set -e
export GNUPGHOME='{home}'
gpg --batch --yes --pinentry-mode loopback --passphrase '' --local-user '{key}' \\
    --armor --detach-sign --output "$1.asc" "$1"
printf '{{"file": "%s", "signature": "%s"}}\\n' "$1" "$1.asc"
"""

#: plugin -> (signing service class, script). pulp_ansible's ``sign`` task calls its
#: service with the collection's ``MANIFEST.json`` and keeps the ``.asc`` it writes (the
#: same contract as pulp_rpm's, ``CollectionSigningFirstStage``).
SERVICES = {"deb": ("deb:AptReleaseSigningService", DEB_SCRIPT),
            "rpm": ("core:AsciiArmoredDetachedSigningService", RPM_SCRIPT),
            "ansible": ("core:AsciiArmoredDetachedSigningService", RPM_SCRIPT)}


def make_key(home: str, run_id: str) -> str:
    """A fresh Ed25519 signing key without a passphrase in ``home``; its fingerprint."""
    os.makedirs(home, mode=0o700)
    env = {**os.environ, "GNUPGHOME": home}
    run(tool("gpg"), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
        "--quick-gen-key", f"Plugin parity {run_id} <parity-{run_id}@example.invalid>",
        "ed25519", "sign", "never", env=env)
    listing = run(tool("gpg"), "--batch", "--with-colons", "--list-secret-keys", env=env)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def services(stack: stacks.Layout, folder: str, run_id: str, plugins: list[str]
             ) -> dict[str, str]:
    """One signing service per plugin of ``plugins`` that signs (deb, rpm, ansible), named
    ``parity-<plugin>-<run_id>``, its key and scripts under ``folder``; plugin -> href."""
    wanted = [plugin for plugin in plugins if plugin in SERVICES]
    if not wanted:
        return {}
    home = os.path.join(folder, "gnupg")
    key = make_key(home, run_id)
    found = {}
    for plugin in wanted:
        kind, template = SERVICES[plugin]
        script = os.path.join(folder, f"sign-{plugin}.sh")
        with open(script, "w") as out:
            out.write(template.format(home=home, key=key))
        os.chmod(script, 0o755)
        name = f"parity-{plugin}-{run_id}"
        done = subprocess.run(
            [os.path.join(stacks.BIN, "pulpcore-manager"), "add-signing-service", name, script,
             key, "--class", kind, "--home", home],
            env=stacks.environment(stack), capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"add-signing-service {name} (exit {done.returncode}):\n"
                             f"{done.stderr.strip()[-2000:]}")
        found[plugin] = name
    return found


def stop(folder: str) -> None:
    """Stop the gpg-agent the key's GNUPGHOME started (signing spawns one per home)."""
    home = os.path.join(folder, "gnupg")
    if os.path.isdir(home):
        subprocess.run([tool("gpgconf"), "--homedir", home, "--kill", "gpg-agent"],
                       capture_output=True, check=False)


def verify(folder: str, signature: bytes, signed: bytes | None = None) -> str | None:
    """Why ``signature`` (clear-signed when ``signed`` is None, else a detached signature
    of ``signed``) is not a valid signature by the run's key, or None (gpg's
    ``VALIDSIG`` status)."""
    import tempfile

    home = os.path.join(folder, "gnupg")
    with tempfile.TemporaryDirectory(prefix="verify-") as work:
        argv = [tool("gpg"), "--batch", "--status-fd", "1", "--verify",
                os.path.join(work, "signature")]
        with open(argv[-1], "wb") as out:
            out.write(signature)
        if signed is not None:
            argv.append(os.path.join(work, "signed"))
            with open(argv[-1], "wb") as out:
                out.write(signed)
        done = subprocess.run(argv, env={**os.environ, "GNUPGHOME": home},
                              capture_output=True, text=True, check=False)
    if "[GNUPG:] VALIDSIG " in done.stdout:
        return None
    return (done.stderr.strip().splitlines() or [f"gpg exit {done.returncode}"])[-1][:200]
