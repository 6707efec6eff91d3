"""Artifacts in Azure Blob Storage: Azurite (from npm) on loopback stands in for Azure."""

from __future__ import annotations

import os
import shutil
import tempfile

import httpx
import pytest
from pulpcore.app.models import Domain

from tests.helpers import ROOT, distribution_in, start_server, stop_server, unique_name

AZURITE = os.path.join(ROOT, ".dev", "node", "node_modules", ".bin", "azurite-blob")
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw"
       "==")
BODY = os.urandom(300 * 1024)


@pytest.fixture(scope="module")
def azurite():
    assert os.path.exists(AZURITE), "Azurite is missing: dev/test-tools.sh installs it"
    workspace = tempfile.mkdtemp(prefix="azurite-")
    running = start_server([AZURITE, "--blobHost", "127.0.0.1", "--blobPort", "{port}",
                            "--location", workspace, "--skipApiVersionCheck", "--silent"],
                           probe=f"/{ACCOUNT}")
    yield running.url(f"/{ACCOUNT}")
    stop_server(running)
    shutil.rmtree(workspace, ignore_errors=True)


def azure_domain(endpoint: str) -> Domain:
    from azure.storage.blob import BlobServiceClient

    container = f"pulp-{unique_name()}"
    connection = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                  f"BlobEndpoint={endpoint};")
    BlobServiceClient.from_connection_string(connection).create_container(container)
    return Domain.objects.create(
        name=f"az-{container}", storage_class="storages.backends.azure_storage.AzureStorage",
        storage_settings={"account_name": ACCOUNT, "account_key": KEY,
                          "azure_container": container, "azure_ssl": False,
                          "connection_string": connection, "expiration_secs": 600},
        redirect_to_object_storage=True)


def test_redirect_to_a_signed_blob_url(domain_server, azurite):
    domain = azure_domain(azurite)
    distribution = distribution_in(domain, {"pkg/file.deb": BODY})
    url = domain_server.url(f"/pulp/content/{domain.name}/{distribution.base_path}/pkg/file.deb")
    response = httpx.get(url)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(azurite) and "sig=" in location
    blob = httpx.get(location)
    assert blob.status_code == 200 and blob.content == BODY
    assert blob.headers["content-disposition"] == "attachment;filename=file.deb"
