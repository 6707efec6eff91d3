"""pytest plugin for the conformance runs against our app (``-p conformance.allowances``):
lets two assertions on a custom HTTP reason phrase read the same text from our body, and
one assertion on curl's wording of a cut download accept curl's other wording of it.

ASGI has no way to send a custom reason phrase: our status line always carries the
standard one ("404 Not Found") and the text pulpcore-content puts in its reason phrase is
in our body instead, in aiohttp's error format ``"<status>: <reason>"``
(docs/differences.md). Two of pulpcore's tests read the reason phrase of an aiohttp
response from ``pulpcore.tests.functional.utils.get_from_url``:

* ``test_content_path.py:90``:
  ``assert "Distribution is not pointing to" in response.reason`` (a 404);
* ``test_contentguard.py:401-402``:
  ``assert rcg.pulp_href in response.reason`` / ``assert hcg.pulp_href in response.reason``
  (a 403 from a composite guard).

For exactly those two test functions (module and name), while the run talks to our app
(``CONFORMANCE_SIDE=asgi``), the module's ``get_from_url`` is wrapped: when the answer
has the status the allowance names and the *standard* reason phrase, the response's
``reason`` becomes a :class:`ReasonPhrase`. Its value is still the phrase on the wire
(so a failing assertion shows the real phrase), and its ``in`` operator also accepts a
needle of the allowed shape that is in the reason our body carries. Every acceptance is
appended as one JSON line to ``CONFORMANCE_ALLOWANCES_LOG`` (the report counts them).
The tests themselves are not changed: every later assertion runs against our app.

The third allowance is for ``test_content_delivery.py:157`` behind Pulp's stock nginx
layout (``CONFORMANCE_PROXY=stock``), which speaks HTTP/1.0 to the app:
``assert b"curl: (18) transfer closed with outstanding read data remaining" in
result.stderr``. That is curl's text for a cut *chunked* body. To an HTTP/1.0 client we
declare the length of an on-demand body whose size is known (with no chunks, a declared
length is the only way a cut stays visible; docs/differences.md), nginx passes the length
on, and curl words the same cut ``curl: (18) transfer closed with N bytes remaining to
read``. Same exit status (18), no output file, the next request a 404: those assertions
run unchanged. For that test only, curl's stderr becomes a :class:`CurlStderr` that also
accepts that one needle when curl exited 18 with the length-declared wording; each use is
logged like the others.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest

PULPCORE_TESTS = "pulpcore.tests.functional.api.using_plugin"
#: A content guard's href as the test builds it (``rcg.pulp_href``, ``hcg.pulp_href``).
GUARD_HREF = re.compile(r"^/pulp/api/v3/contentguards/core/(content_redirect|header)/"
                        r"[0-9a-f-]{36}/$")


@dataclass(frozen=True)
class Allowance:
    """One reason-phrase assertion: the status it is made on and the needles it tests."""

    status: int
    needle: re.Pattern[str]
    assertion: str


ALLOWANCES: dict[tuple[str, str], Allowance] = {
    (f"{PULPCORE_TESTS}.test_content_path", "test_content_directory_listing"): Allowance(
        404, re.compile(r"^Distribution is not pointing to$"),
        'test_content_path.py:90 assert "Distribution is not pointing to" in '
        "response.reason"),
    (f"{PULPCORE_TESTS}.test_contentguard", "test_composite_contentguard_permissions"):
        Allowance(403, GUARD_HREF,
                  "test_contentguard.py:401-402 assert rcg.pulp_href in response.reason; "
                  "assert hcg.pulp_href in response.reason"),
}


class ReasonPhrase(str):
    """The reason phrase received; ``needle in phrase`` also looks in the body's reason."""

    body_reason: str
    accept: Callable[[str], bool]

    def __new__(cls, phrase: str, body_reason: str,
                accept: Callable[[str], bool]) -> ReasonPhrase:
        made = super().__new__(cls, phrase)
        made.body_reason = body_reason
        made.accept = accept
        return made

    def __contains__(self, needle: object) -> bool:
        if str.__contains__(self, needle):  # type: ignore[operator]
            return True
        return isinstance(needle, str) and needle in self.body_reason and self.accept(needle)


def body_reason(status: int, body: str) -> str:
    """The reason in an aiohttp-format error body ``"<status>: <reason>"``, else ``""``."""
    head = f"{status}: "
    return body[len(head):] if body.startswith(head) else ""


def _record(nodeid: str, allowance: Allowance, status: int, phrase: str, reason: str,
            needle: str) -> bool:
    """Accept ``needle`` if it has the allowed shape, and log that the allowance fired."""
    if not allowance.needle.search(needle):
        return False
    line = json.dumps({"test": nodeid, "assertion": allowance.assertion, "status": status,
                       "reason_phrase": phrase, "needle": needle, "body_reason": reason})
    with open(os.environ["CONFORMANCE_ALLOWANCES_LOG"], "a") as log:
        log.write(line + "\n")  # one short append per line: safe across xdist workers
    return True


async def _get(nodeid: str, allowance: Allowance, url: str, auth: Any = None,
               headers: Any = None) -> aiohttp.ClientResponse:
    """``get_from_url``'s request (pulpcore/tests/functional/utils.py), plus the body's
    reason when the answer is the allowance's status with the standard phrase."""
    async with (aiohttp.ClientSession(auth=auth) as session,
                session.get(url, ssl=False, headers=headers) as response):
        standard = HTTPStatus(response.status).phrase
        if response.status == allowance.status and response.reason == standard:
            reason = body_reason(response.status, await response.text())
            response.reason = ReasonPhrase(standard, reason, functools.partial(
                _record, nodeid, allowance, response.status, standard, reason))
        return response


def _active() -> bool:
    return (os.environ.get("CONFORMANCE_SIDE") == "asgi"
            and bool(os.environ.get("CONFORMANCE_ALLOWANCES_LOG")))


CURL_CHUNKED_CUT = b"curl: (18) transfer closed with outstanding read data remaining"
CURL_LENGTH_CUT = re.compile(rb"^curl: \(18\) transfer closed with \d+ bytes remaining to read$",
                             re.MULTILINE)
CURL_ASSERTION = ('test_content_delivery.py:157 assert b"curl: (18) transfer closed with '
                  'outstanding read data remaining" in result.stderr')
#: (module, test) -> the nginx layout the curl-wording allowance applies behind.
CURL_ALLOWANCES: dict[tuple[str, str], str] = {
    (f"{PULPCORE_TESTS}.test_content_delivery", "test_remote_content_changed_with_on_demand"):
        "stock",
}


class CurlStderr(bytes):
    """curl's stderr; ``CURL_CHUNKED_CUT in stderr`` also holds for the length-declared
    wording of the same cut (see the module docstring)."""

    accept: Callable[[bytes], bool]

    def __new__(cls, data: bytes, accept: Callable[[bytes], bool]) -> CurlStderr:
        made = super().__new__(cls, data)
        made.accept = accept
        return made

    def __contains__(self, needle: object) -> bool:
        if bytes.__contains__(self, needle):  # type: ignore[operator]
            return True
        return needle == CURL_CHUNKED_CUT and self.accept(needle)


def _record_curl(nodeid: str, stderr: bytes, needle: bytes) -> bool:
    found = CURL_LENGTH_CUT.search(stderr)
    assert found is not None
    line = json.dumps({"test": nodeid, "assertion": CURL_ASSERTION, "status": 18,
                       "needle": needle.decode(), "found": found.group(0).decode()})
    with open(os.environ["CONFORMANCE_ALLOWANCES_LOG"], "a") as log:
        log.write(line + "\n")
    return True


def _curl_run(nodeid: str, run: Callable[..., Any]) -> Callable[..., Any]:
    """``subprocess.run`` that marks the stderr of a curl that exited 18 with the
    length-declared wording of a cut; anything else is returned untouched."""

    @functools.wraps(run)
    def wrapped(cmd: Any, *args: Any, **kwargs: Any) -> Any:
        result = run(cmd, *args, **kwargs)
        if (isinstance(cmd, list) and cmd and cmd[0] == "curl" and result.returncode == 18
                and isinstance(result.stderr, bytes) and CURL_LENGTH_CUT.search(result.stderr)):
            result.stderr = CurlStderr(result.stderr, functools.partial(
                _record_curl, nodeid, result.stderr))
        return result

    return wrapped


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Wrap the module's ``get_from_url`` (or ``subprocess``) for the duration of an
    allowed test only."""
    module = getattr(item, "module", None)
    name = getattr(item, "originalname", item.name)
    key = (getattr(module, "__name__", ""), name)
    if (key in CURL_ALLOWANCES and _active()
            and os.environ.get("CONFORMANCE_PROXY") == CURL_ALLOWANCES[key]):
        real = module.subprocess  # type: ignore[union-attr]
        shim = types.SimpleNamespace(**{k: getattr(real, k) for k in ("PIPE", "STDOUT",
                                                                      "DEVNULL")})
        shim.run = _curl_run(item.nodeid, real.run)
        module.subprocess = shim  # type: ignore[union-attr]
        try:
            return (yield)
        finally:
            module.subprocess = real  # type: ignore[union-attr]
    allowance = ALLOWANCES.get(key)
    if allowance is None or not _active():
        return (yield)
    original = module.get_from_url  # type: ignore[union-attr]

    def get_from_url(url: str, auth: Any = None, headers: Any = None) -> Any:
        return asyncio.run(_get(item.nodeid, allowance, url, auth, headers))

    module.get_from_url = get_from_url  # type: ignore[union-attr]
    try:
        return (yield)
    finally:
        module.get_from_url = original  # type: ignore[union-attr]
