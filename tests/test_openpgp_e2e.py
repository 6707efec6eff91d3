"""pulpcore's OpenPGPDistribution: a core distribution whose content_handler returns an
aiohttp Response (converted by our bridge) and adds ``<keyid>.pub`` to listings."""

from __future__ import annotations

import os
import subprocess
import tempfile

import httpx
from pulpcore.app.models import OpenPGPDistribution, OpenPGPKeyring, OpenPGPPublicKey
from pulpcore.app.openpgp import read_public_key
from pulpcore.app.util import openpgp_key_id


def _public_key() -> bytes:
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o700)
        env = {**os.environ, "GNUPGHOME": home}
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        "Content Test <content@example.com>", "ed25519", "sign", "never"],
                       env=env, check=True, capture_output=True)
        return subprocess.run(["gpg", "--export"], env=env, check=True,
                              capture_output=True).stdout


def test_public_keys_are_served_and_listed(server, unique):
    parsed = read_public_key(_public_key())
    key = OpenPGPPublicKey.objects.create(raw_data=parsed["raw_data"],
                                          fingerprint=parsed["fingerprint"],
                                          created=parsed["created"])
    keyring = OpenPGPKeyring.objects.create(name=f"keys-{unique}")
    with keyring.new_version() as version:
        version.add_content(OpenPGPPublicKey.objects.filter(pk=key.pk))
    distribution = OpenPGPDistribution.objects.create(name=f"keys-{unique}",
                                                      base_path=f"keys-{unique}",
                                                      repository=keyring)
    key_id = openpgp_key_id(key.fingerprint)
    base = server.url(f"/pulp/content/{distribution.base_path}/")
    response = httpx.get(f"{base}{key_id}.pub")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pgp-keys; charset=us-ascii"
    assert response.text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert f'<a href="./{key_id}.pub">' in httpx.get(base).text
    assert httpx.get(f"{base}{'0' * 16}.pub").status_code == 404
