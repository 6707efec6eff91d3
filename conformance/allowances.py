"""pytest plugin for the conformance runs against our app (``-p conformance.allowances``):
lets two assertions on a custom HTTP reason phrase read the same text from our body.

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
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Wrap the module's ``get_from_url`` for the duration of an allowed test only."""
    module = getattr(item, "module", None)
    name = getattr(item, "originalname", item.name)
    allowance = ALLOWANCES.get((getattr(module, "__name__", ""), name))
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
