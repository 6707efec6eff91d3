"""The plugin corpus on object storage (conformance/object_storage.py, ``compare`` in
conformance/parity_plugins.py): a signed ``Location`` compared without its signing time,
its signature checked for the method, what the client ends with after the redirect
compared, and the object-storage rules holding only for the difference they name."""

import hashlib
from urllib.parse import quote, unquote

import boto3
import pytest

from conformance import object_storage as s3
from conformance import parity as base
from conformance.parity_plugins import PluginProbe, compare, judge

ENDPOINT = "http://127.0.0.1:9"
FILE = "/somewhere/else/domain-ab12cd-s3-redirect/parity-ab12cd/file/immediate/big.bin"
FILE_FS = "/somewhere/else/domain-ab12cd/parity-ab12cd/file/immediate/big.bin"
BODY = b"the file's bytes\n"
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
BLOB = ("/pulp/container/domain-ab12cd-s3-redirect/parity-ab12cd/container/immediate/blobs/"
        f"{DIGEST}?expires=1&validate_token=x")


def presigned(method: str = "get_object", **params: str) -> str:
    """A URL signed by boto3 as django-storages signs one (offline: no request is made)."""
    client = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=s3.ACCESS_KEY,
                          aws_secret_access_key=s3.SECRET_KEY, region_name=s3.REGION,
                          config=boto3.session.Config(signature_version="s3v4",
                                                      s3={"addressing_style": "path"}))
    return client.generate_presigned_url(method, Params={
        "Bucket": "parity", "Key": "artifact/ab/cdef", **params}, ExpiresIn=3600)


def resigned(location: str) -> str:
    """The same URL as pulpcore-content sends it a day later: another date and
    signature, ``,`` and ``/`` in the query unescaped (yarl's requoting)."""
    base_url, _, query = location.partition("?")
    pairs = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "X-Amz-Date":
            value = "20991231T235959Z"
        elif name == "X-Amz-Signature":
            value = "0" * 64
        elif name == "X-Amz-Credential":
            value = quote(unquote(value).replace(unquote(value).split("/")[1], "20991231"),
                          safe="/")
        pairs.append(f"{name}={value.replace('%2C', ',').replace('%2F', '/')}")
    return f"{base_url}?{'&'.join(pairs)}"


def test_a_location_signed_at_another_time_compares_equal() -> None:
    location = presigned(ResponseContentDisposition="attachment;filename=big.bin",
                         ResponseCacheControl="public, max-age=0, must-revalidate")
    assert s3.unsigned(location) == s3.unsigned(resigned(location))
    assert "X-Amz-Signature" not in s3.unsigned(location)


def test_a_location_naming_other_response_headers_compares_different() -> None:
    assert (s3.unsigned(presigned(ResponseContentType="application/x-rpm"))
            != s3.unsigned(presigned(ResponseContentType="application/octet-stream")))


def test_a_signature_is_checked_for_the_method() -> None:
    assert s3.signature_problem(presigned(), "GET") is None
    assert s3.signature_problem(presigned("head_object"), "HEAD") is None
    assert s3.signature_problem(presigned(), "HEAD") == "signed for GET, asked with HEAD"
    assert s3.signature_problem(resigned(presigned()), "GET") == "signature does not verify"


def answer(status: int, body: bytes = b"", **headers: str) -> base.Answer:
    return base.Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def probe(path: str, **headers: str) -> PluginProbe:
    return PluginProbe("x", path, "GET", {k.replace("_", "-"): v for k, v in headers.items()},
                       plugin="file", policy="immediate", storage="S3 redirect")


def test_if_none_match_star_answered_304_on_a_redirecting_domain_is_explained() -> None:
    """Ours 304, pulpcore-content's 302 (its check never matches ``*``): the whole answer
    follows from the status, on the app and on what the client ends with."""
    location = presigned()
    got = {"asgi": answer(304, etag='"x"'),
           "legacy": answer(302, b"302: Found", location=location, cache_control="no-store")}
    followed = {"legacy": answer(200, BODY, content_length=str(len(BODY)))}
    diffs, verdicts = compare(probe(FILE, If_None_Match="*"), got, {}, followed)
    assert {diff.field for diff in diffs} >= {"status", "location", "storage status",
                                              "storage body"}
    assert "UNEXPLAINED" not in verdicts
    diffs, verdicts = compare(probe(FILE), got, {}, followed)  # without the header
    assert verdicts[[diff.field for diff in diffs].index("status")] == "UNEXPLAINED"


def test_the_same_status_difference_off_object_storage_is_not_excused() -> None:
    diff = base.Difference("status", "304", "302")
    assert judge(probe(FILE_FS, If_None_Match="*"), answer(304), answer(302),
                 [diff]) == ["UNEXPLAINED"]


def test_a_redirected_blob_is_judged_by_the_bytes_the_client_ends_with() -> None:
    """Ours 302 to S3 where pulp_container streams the blob: explained, but the storage's
    answer must be the blob, byte for byte."""
    location = presigned()
    blob = PluginProbe("x", BLOB, "GET", plugin="container", policy="immediate",
                       digest=DIGEST, storage="S3 redirect")
    got = {"asgi": answer(302, b"302: Found", location=location, docker_content_digest=DIGEST),
           "legacy": answer(200, BODY, docker_content_digest=DIGEST)}
    diffs, verdicts = compare(blob, got, {}, {"asgi": answer(200, BODY)})
    assert diffs and "UNEXPLAINED" not in verdicts
    assert not any(diff.field.startswith(("storage", "asgi:")) for diff in diffs)
    diffs, verdicts = compare(blob, got, {}, {"asgi": answer(200, b"other bytes")})
    found = dict(zip((diff.field for diff in diffs), verdicts, strict=True))
    assert found["storage body"] == "UNEXPLAINED"
    assert found["asgi: the blob"] == "UNEXPLAINED"


def test_a_redirect_the_storage_refuses_is_unexplained() -> None:
    location = presigned()
    got = {side: answer(302, b"302: Found", location=location) for side in ("asgi", "legacy")}
    followed = {side: answer(403, b"denied") for side in ("asgi", "legacy")}
    diffs, verdicts = compare(probe(FILE), got, {}, followed)
    assert dict(zip((d.field for d in diffs), verdicts, strict=True))[
        "asgi: storage answer"] == "UNEXPLAINED"


@pytest.mark.parametrize(("cold", "policy", "reason"), [
    ("HEAD", "on_demand", "not the upstream"),
    (None, "streamed", "not the upstream"),
    (None, "on_demand", "aiohttp's mtime-size"),
])
def test_an_upstream_etag_is_read_as_one_only_on_a_fetched_answer(
        cold: str | None, policy: str, reason: str) -> None:
    asked = PluginProbe("x", FILE_FS, "GET", plugin="rpm", policy=policy, cold=cold)
    diff = base.Difference("etag", '"' + "a" * 64 + '"', '"6b0d1053-800000"')
    assert reason in judge(asked, answer(200), answer(200), [diff])[0]


# Streamed pull-through and signed collections (the same corpus, issue #14).

def test_a_streamed_pull_through_distribution_pulls_through_a_streamed_remote() -> None:
    from conformance.parity_plugins import kind_of, never_stores, pulls_through, remote_policy

    assert pulls_through("pull_through_streamed") and never_stores("pull_through_streamed")
    assert remote_policy("npm", "pull_through_streamed") == "streamed"
    assert remote_policy("npm", "pull_through") == "immediate"
    assert remote_policy("container", "pull_through") == "on_demand"
    assert kind_of("container", "pull_through").remote == "container/pull-through"
    assert not never_stores("pull_through")


def collection(manifest: bytes) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    return out.getvalue()


def test_a_collection_signature_is_checked_against_the_served_manifest() -> None:
    from conformance.parity_plugins import collection_manifest

    assert collection_manifest(collection(b'{"collection_info": {}}')) == (
        b'{"collection_info": {}}')
    assert collection_manifest(b"not a tarball") == b""
