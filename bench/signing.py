"""What signing one redirect costs (issue #18: presigned URL generation per request).

    .venv/bin/python -m bench.signing [--count 2000] [--repeats 3]

A 302 to object storage (``serving/artifacts.py``'s ``storage_redirect``) calls the
domain's storage ``url()`` once, with the response parameters pulpcore passes. This times
that call, in-process and without any network, for each storage the app redirects to:
S3 (django-storages' ``S3Storage``: botocore's SigV4 query signing), Azure
(``AzureStorage``: an account-key SAS, HMAC-SHA256) and GCS (``GoogleCloudStorage``: V4
signing with a service-account RSA key generated here, never valid anywhere). The storage
object is built once, as ``Domain.get_storage()`` keeps one per domain, so what is timed
is what every redirect pays. Prints one line per storage: the median over ``--repeats``
of the mean microseconds per URL over ``--count`` calls (CPU time of this thread,
``time.thread_time``, so other load on the machine does not inflate it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

#: Azurite's well-known development account key (public, documented by Microsoft).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
NAME = "artifact/3f/8a5e0c1e1f4f1c9b0d2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
#: The response parameters a redirect carries (``STORAGE_RESPONSE_MAP``'s targets).
DISPOSITION = "attachment;filename=bash-5.2.15-1.x86_64.rpm"


def _django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()


def s3() -> Callable[[], str]:
    from storages.backends.s3 import S3Storage

    storage = S3Storage(access_key="AKIDEXAMPLE", secret_key="secret", bucket_name="pulp",
                        endpoint_url="http://127.0.0.1:9000", region_name="us-east-1")
    parameters = {"ResponseContentDisposition": DISPOSITION,
                  "ResponseContentType": "application/x-rpm"}
    return lambda: storage.url(NAME, parameters=parameters, http_method="GET")


def azure() -> Callable[[], str]:
    from storages.backends.azure_storage import AzureStorage

    storage = AzureStorage(account_name="devstoreaccount1", account_key=AZURITE_KEY,
                           azure_container="pulp", expiration_secs=3600,
                           custom_domain="127.0.0.1:10000")
    parameters = {"content_disposition": DISPOSITION, "content_type": "application/x-rpm"}
    return lambda: storage.url(NAME, parameters=parameters)


def gcs() -> Callable[[], str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account
    from storages.backends.gcloud import GoogleCloudStorage

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    credentials = service_account.Credentials.from_service_account_info({
        "type": "service_account", "project_id": "bench", "private_key_id": "1",
        "private_key": pem, "client_email": "content@bench.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "http://127.0.0.1:9/token"})
    storage = GoogleCloudStorage(bucket_name="pulp", credentials=credentials,
                                 project_id="bench", querystring_auth=True)
    parameters = {"response_disposition": DISPOSITION, "content_type": "application/x-rpm",
                  "method": "GET"}
    return lambda: storage.url(NAME, parameters=parameters)


STORAGES = {"s3": s3, "azure": azure, "gcs": gcs}


def per_call_us(sign: Callable[[], str], count: int) -> float:
    sign()  # lazy imports and clients built on first use are not per-request costs
    began = time.thread_time()
    for _ in range(count):
        sign()
    return (time.thread_time() - began) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storages", default=",".join(STORAGES))
    args = parser.parse_args()
    _django()
    for name in args.storages.split(","):
        sign = STORAGES[name]()
        runs = [per_call_us(sign, args.count) for _ in range(args.repeats)]
        print(f"{name:6} {statistics.median(runs):8.1f} µs per signed URL (CPU; runs "
              f"{', '.join(f'{r:.1f}' for r in runs)}; {args.count} calls each); e.g. "
              f"{sign()[:90]}...", flush=True)


if __name__ == "__main__":
    main()
