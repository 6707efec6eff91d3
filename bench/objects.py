"""The object-storage scenario's correctness check: before a contender's 302s are counted,
GET and HEAD of published files must be what a client needs.

pulpcore-content, with ``Domain.redirect_to_object_storage`` on and an S3 storage, answers
a published file with ``302 Found`` to a URL the storage presigned (query-string SigV4)
for the request's method (``http_method=request.method`` in
``Handler._build_response_from_content_artifact``), and ``Cache-Control: no-store``.
So for each file checked:

* GET → 302; ``Location`` is the object (this S3 server, ``/<bucket>/<key>`` in path
  style) presigned for GET; following it gives 200 and exactly the file's bytes;
* HEAD → 302; ``Location`` is the object presigned for HEAD; a HEAD there gives 200 with
  the file's length.

moto does not check which method a URL was signed for (S3 does), so the signature is
recomputed here (:func:`signed_for`) from the URL and the scenario's credentials.
"""

from __future__ import annotations

import hmac
import http.client
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

#: Files of the set checked per contender (GET and HEAD each).
CHECKED = 3


def _request(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one request, redirects not
    followed."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=60)
    try:
        conn.request(method, target)
        answer = conn.getresponse()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body
    finally:
        conn.close()


def signed_for(location: str, access_key: str, secret_key: str) -> str | None:
    """The HTTP method ``location``'s SigV4 query signature is valid for ("GET" or
    "HEAD"), or None: botocore recomputes the signature from the URL alone
    (``X-Amz-Date``, ``X-Amz-Credential``'s region, ``X-Amz-Expires``)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(location)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    if not {"X-Amz-Signature", "X-Amz-Date", "X-Amz-Credential",
            "X-Amz-Expires"} <= set(query):
        return None
    unsigned = urlunsplit(parts._replace(query=urlencode(
        [(k, v) for k, v in pairs if k != "X-Amz-Signature"], quote_via=quote)))
    region = query["X-Amz-Credential"].split("/")[2]
    for method in ("GET", "HEAD"):
        request = AWSRequest(method=method, url=unsigned)
        request.context["timestamp"] = query["X-Amz-Date"]
        auth = S3SigV4QueryAuth(Credentials(access_key, secret_key), "s3", region,
                                expires=int(query["X-Amz-Expires"]))
        expected = auth.signature(
            auth.string_to_sign(request, auth.canonical_request(request)), request)
        if hmac.compare_digest(expected, query["X-Amz-Signature"]):
            return method
    return None


def _one(base: str, path: str, method: str, expected: bytes, object_url: str,
         credentials: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """What ``method`` of ``path`` gave and what is wrong with it."""
    status, headers, _ = _request(method, base + path)
    seen: dict[str, Any] = {"status": status}
    if status != 302:
        return seen, [f"{method} {path}: status {status}, expected 302"]
    location = headers.get("location", "")
    seen["location"] = location
    problems = []
    target = urlsplit(location)
    wanted = urlsplit(object_url)
    if (target.netloc, target.path) != (wanted.netloc, wanted.path):
        problems.append(f"{method} {path}: Location {location[:120]!r} is not the object "
                        f"{object_url}")
    seen["signed_for"] = signed_for(location, credentials["access_key"],
                                    credentials["secret_key"])
    if seen["signed_for"] != method:
        problems.append(f"{method} {path}: Location signed for {seen['signed_for']}, "
                        f"expected {method}")
    followed, object_headers, body = _request(method, location)
    seen["followed_status"] = followed
    if followed != 200:
        problems.append(f"{method} {path}: following Location gave {followed}")
    elif method == "GET" and body != expected:
        problems.append(f"GET {path}: following Location gave {len(body)} bytes that are "
                        f"not the file's {len(expected)}")
    elif method == "HEAD" and object_headers.get("content-length") != str(len(expected)):
        problems.append(f"HEAD {path}: the object's Content-Length is "
                        f"{object_headers.get('content-length')}, expected {len(expected)}")
    return seen, problems


def check(base: str, prefix: str, paths: list[str], blobs: dict[str, bytes],
          object_urls: dict[str, str], credentials: dict[str, str]) -> dict[str, Any]:
    """GET and HEAD of the first :data:`CHECKED` of ``paths`` (under ``prefix``) at
    ``base``; ``object_urls`` maps each path to its object's unsigned URL. Returns
    ``{"ok": bool, "problems": [...], "requests": [...]}``; never raises for a wrong
    answer (a connection error does raise: the caller records the contender as failed)."""
    problems: list[str] = []
    requests = []
    for path in paths[:CHECKED]:
        for method in ("GET", "HEAD"):
            seen, wrong = _one(base, prefix + path, method, blobs[path], object_urls[path],
                               credentials)
            requests.append({"method": method, "path": prefix + path, **seen})
            problems += wrong
    return {"ok": not problems, "problems": problems, "requests": requests}
