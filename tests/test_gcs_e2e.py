"""Artifacts in Google Cloud Storage: gcp-storage-emulator (PyPI) on loopback stands in for GCS.

The emulator stores and serves objects but checks no signatures, and google-cloud-storage
will not sign with the anonymous credentials it uses against an emulator. So the server
signs with a throwaway service-account key made here (GOOGLE_APPLICATION_CREDENTIALS, as
production does; signing is local, no token exchange), and the test verifies the V4
signature of each redirect with the key's public half, method included, before following
it to the emulator for the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pulpcore.app.models import Domain

from tests.helpers import content_app, distribution_in, start_server, stop_server, unique_name

EMULATOR = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
GCS = "storages.backends.gcloud.GoogleCloudStorage"
BODY = os.urandom(200 * 1024)


@pytest.fixture(scope="module")
def emulator():
    assert os.path.exists(EMULATOR), "gcp-storage-emulator is missing: pip install -e '.[test]'"
    running = start_server([EMULATOR, "start", "--host", "127.0.0.1", "--port", "{port}",
                            "--in-memory", "--quiet"], probe="/")
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = running.base  # this process uploads the artifacts
    yield running.base
    if before is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = before
    stop_server(running)


@pytest.fixture(scope="module")
def service_account():
    """A service-account key file of our own (never valid at Google) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    directory = tempfile.mkdtemp(prefix="gcs-key-")
    path = os.path.join(directory, "key.json")
    with open(path, "w") as out:
        json.dump({"type": "service_account", "project_id": "pulp-test",
                   "private_key_id": uuid.uuid4().hex, "private_key": pem,
                   "client_email": "content@pulp-test.iam.gserviceaccount.com",
                   "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}, out)
    yield path, key.public_key()
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def gcs_servers(emulator, service_account):
    """One app that signs (credentials, no emulator API) and one that proxies (emulator)."""
    common = {"PULP_DOMAIN_ENABLED": "true"}
    signing = content_app(env={**common, "GOOGLE_APPLICATION_CREDENTIALS": service_account[0],
                               "STORAGE_EMULATOR_HOST": ""},
                          probe="/pulp/content/default/")
    proxying = content_app(env={**common, "STORAGE_EMULATOR_HOST": emulator},
                           probe="/pulp/content/default/")
    yield signing, proxying
    stop_server(signing)
    stop_server(proxying)


def gcs_domain(endpoint: str, redirect: bool) -> Domain:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = f"pulp-{unique_name()}"
    storage.Client(project="pulp-test", credentials=AnonymousCredentials()).create_bucket(bucket)
    return Domain.objects.create(
        name=f"gcs-{bucket}", storage_class=GCS,
        storage_settings={"bucket_name": bucket, "project_id": "pulp-test",
                          "custom_endpoint": f"{endpoint}/{bucket}"},
        redirect_to_object_storage=redirect)


def signed_for(location: str, method: str, public_key, bucket: str) -> bool:
    """Whether ``location`` carries a valid GCS V4 signature for ``method`` (the spec's
    canonical request, rebuilt from the URL alone)."""
    parts = urlsplit(location)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    signature = bytes.fromhex(query["X-Goog-Signature"])
    canonical_query = "&".join(sorted(p for p in parts.query.split("&")
                                      if not p.startswith("X-Goog-Signature=")))
    resource = parts.path.removeprefix(f"/{bucket}")  # the endpoint is bound to the bucket
    canonical = "\n".join([method, resource, canonical_query, f"host:{parts.netloc}\n",
                           query["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    scope = unquote(query["X-Goog-Credential"]).split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    try:
        public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_redirect_to_a_url_signed_for_the_method(gcs_servers, emulator, service_account):
    signing, _ = gcs_servers
    domain = gcs_domain(emulator, redirect=True)
    bucket = domain.storage_settings["bucket_name"]
    distribution = distribution_in(domain, {"pool/pkg.whl": BODY})
    url = signing.url(f"/pulp/content/{domain.name}/{distribution.base_path}/pool/pkg.whl")

    response = httpx.get(url)
    assert response.status_code == 302
    assert response.headers["x-pulp-artifact-size"] == str(len(BODY))
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(f"{emulator}/{bucket}/")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith("content@pulp-test.iam.gserviceaccount.com/")
    assert query["response-content-disposition"] == "attachment;filename=pkg.whl"
    public_key = service_account[1]
    assert signed_for(location, "GET", public_key, bucket)
    assert not signed_for(location, "HEAD", public_key, bucket)
    blob = httpx.get(location)
    assert blob.status_code == 200 and blob.content == BODY

    head = httpx.head(url)
    assert head.status_code == 302
    assert signed_for(head.headers["location"], "HEAD", public_key, bucket)
    assert not signed_for(head.headers["location"], "GET", public_key, bucket)


def test_proxied_objects_keep_file_semantics(gcs_servers, emulator):
    _, proxying = gcs_servers
    domain = gcs_domain(emulator, redirect=False)
    distribution = distribution_in(domain, {"data.bin": BODY})
    url = proxying.url(f"/pulp/content/{domain.name}/{distribution.base_path}/data.bin")

    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == BODY
    etag = whole.headers["etag"]
    assert etag == f'"{hashlib.sha256(BODY).hexdigest()}"'
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == BODY[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(BODY)}"
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
