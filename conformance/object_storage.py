"""Domains on object storage for the plugin parity corpus (``parity_plugins --domains``):
moto's S3 server on loopback, two domains in buckets of their own, and how a redirect to
a signed S3 URL is compared.

    with object_storage.serve(port, log_dir) as endpoint:
        root = object_storage.make_domain(origin, "domain-ab12cd-s3-redirect", endpoint, True)

moto (PyPI, pure Python, the test suite's S3 server: tests/test_object_storage_e2e.py)
speaks S3's signature v4 as boto3 signs it in production, but checks no signature; so
each ``Location`` is verified here (botocore recomputes the signature from the URL and the
run's credentials, for the request's method) before it is followed.

The domains are made as an operator makes one, through pulpcore-api
(``POST /pulp/default/api/v3/domains/``, ``storage_class``
``storages.backends.s3.S3Storage``: the class pulpcore's API offers as "Use Amazon S3 as
storage"; ``S3Boto3Storage`` is its deprecated alias). Pulp's workers store what they
sync and publish there, and both content apps read, sign and save through it.

A signed URL differs with each signing (``X-Amz-Date``, ``X-Amz-Signature`` and the date
in ``X-Amz-Credential``): ``unsigned`` drops those, so two apps' redirects compare equal
when they name the same object with the same parameters (``response-content-type``,
``response-content-disposition``, expiry, signed headers); ``follow`` then asks the
storage for what each redirect names, with the request's method and headers, as a client
that follows it does.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from conformance import parity as base
from conformance import stack as stacks

STORAGE_CLASS = "storages.backends.s3.S3Storage"
#: moto accepts any credentials; these sign every URL (and verify them here).
ACCESS_KEY, SECRET_KEY = "parity", "parity-secret"
REGION = "us-east-1"
#: The object-storage domains of a run: (name suffix, ``redirect_to_object_storage``).
DOMAINS = (("s3-redirect", True), ("s3-proxy", False))
#: What is made in each: the plugins (pulp_file is not in the FileSystem corpus: its
#: upstream is make clients' 8 MiB file and a zchunk file) and the sync policies.
PLUGINS = ("file", "rpm", "python", "container")
POLICIES = ("immediate", "on_demand")
#: Query parameters that change with each signing.
SIGNING_TIME = ("X-Amz-Date", "X-Amz-Signature")
#: The headers of the storage's answers compared between the two redirects' targets.
FOLLOWED = ("content-type", "content-length", "content-range", "content-disposition",
            "cache-control", "etag", "last-modified", "transport")
#: Compared when one app redirected and the other answered itself: what a client ends
#: with (the storage's and an app's other headers describe different servers).
FOLLOWED_ONE_SIDE = ("content-length", "content-range", "transport")


@contextlib.contextmanager
def serve(port: int, log_dir: str) -> Iterator[str]:
    """moto's S3 server on ``127.0.0.1:port`` until exit; yields its endpoint URL."""
    from pulp_content_asgi.devtools import processes

    binary = os.path.join(stacks.BIN, "moto_server")
    if not os.path.exists(binary):
        raise SystemExit("moto's server is missing: pip install -e '.[test]' (make venv)")
    server = processes.start([binary, "-H", "127.0.0.1", "-p", "{port}"], log_dir,
                             probe="/", port=port)
    try:
        yield server.base
    finally:
        processes.stop(server)


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                 aws_secret_access_key=SECRET_KEY, region_name=REGION).create_bucket(
        Bucket=name)


def storage_settings(endpoint: str, bucket: str) -> dict[str, object]:
    """The domain's ``storage_settings`` (pulpcore's ``AmazonS3SettingsSerializer``
    names): path-style addressing, signature v4, on moto's endpoint."""
    return {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "bucket_name": bucket,
            "endpoint_url": endpoint, "region_name": REGION, "signature_version": "s3v4",
            "addressing_style": "path"}


def unsigned(location: str) -> str:
    """``location`` as S3 reads it, without what changes with each signing: the query's
    parameters decoded (S3 decodes them: pulpcore-content's ``HTTPFound`` sends ``,`` and
    ``/`` where boto3's URL, which we send as it is, has ``%2C`` and ``%2F``) and encoded
    again one way, in their order; ``X-Amz-Date`` and ``X-Amz-Signature`` dropped, the
    date in ``X-Amz-Credential`` shown as ``<date>``."""
    parts = urlsplit(location)
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in SIGNING_TIME:
            continue
        if name == "X-Amz-Credential":
            value = re.sub(r"/\d{8}/", "/<date>/", value)
        kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept, quote_via=quote, safe="<>")))


def is_signed(location: str) -> bool:
    """Whether ``location`` is a URL signed by S3's query authentication."""
    return "X-Amz-Signature=" in urlsplit(location).query


def signature_problem(location: str, method: str) -> str | None:
    """Why ``location`` is not validly signed for ``method`` with the run's credentials
    (S3 SigV4 query authentication, recomputed by botocore from the URL alone), or None."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(location)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    if "X-Amz-Signature" not in query:
        return "no X-Amz-Signature"
    others = urlunsplit(parts._replace(query=urlencode(
        [(k, v) for k, v in pairs if k != "X-Amz-Signature"], quote_via=quote)))
    request = AWSRequest(method=method, url=others)
    request.context["timestamp"] = query["X-Amz-Date"]
    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3",
                            query["X-Amz-Credential"].split("/")[2],
                            expires=int(query["X-Amz-Expires"]))
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    if hmac.compare_digest(expected, query["X-Amz-Signature"]):
        return None
    other = "HEAD" if method == "GET" else "GET"
    request = AWSRequest(method=other, url=others)
    request.context["timestamp"] = query["X-Amz-Date"]
    if hmac.compare_digest(auth.signature(auth.string_to_sign(
            request, auth.canonical_request(request)), request), query["X-Amz-Signature"]):
        return f"signed for {other}, asked with {method}"
    return "signature does not verify"


def follow(location: str, probe: base.Probe) -> base.Answer:
    """What the storage answers to the redirect's target, asked with the probe's method
    and headers (``Range``, conditionals), as a client that follows the redirect asks."""
    parts = urlsplit(location)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return base.ask(parts.port or 80, parts.netloc,
                    base.Probe(probe.label, target, probe.method, dict(probe.headers)))


def followed_differences(ours: base.Answer, theirs: base.Answer,
                         compared: tuple[str, ...] = FOLLOWED) -> list[base.Difference]:
    """Two answers a client ends with compared: status, ``compared`` headers and the
    body; each difference's field named ``storage <field>``."""
    return [base.Difference(f"storage {diff.field}", diff.ours, diff.theirs)
            for diff in base.differences(ours, theirs, compared)]
