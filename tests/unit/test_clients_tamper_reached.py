"""``make clients``' tampered-upstream rows count only when the tampering was exercised:
the client asked the front door for a tampered file and the app fetched one from the
upstream, read from the two nginx access logs after the marks taken before the client ran
(clients/run.py ``tamper_reached``)."""

from __future__ import annotations

import os
from types import SimpleNamespace

from clients.run import _log_end, tamper_reached
from conformance.stack import PREFIX

LINE = '127.0.0.1 - - [30/Nov/2026:02:00:00 +0000] "{method} {target} HTTP/1.1" 200 5 "-" "x"\n'


def log(path: str, *requests: tuple[str, str]) -> None:
    with open(path, "a") as out:
        for method, target in requests:
            out.write(LINE.format(method=method, target=target))


def setup(tmp_path):
    stack = SimpleNamespace(path=lambda *p: os.path.join(tmp_path, "stack", *p))
    os.makedirs(tmp_path / "stack" / "logs")
    root = tmp_path / "fixtures"
    jar = root / "www" / "maven" / "on_demand" / "a.jar"
    os.makedirs(jar.parent)
    jar.write_bytes(b"x")
    one = SimpleNamespace(base_path="mvn/od", cold={"a.jar": "k1", "a.pom": "k2"})
    front = stack.path("logs", "nginx-access.log")
    upstream = str(root / "nginx-access.log")
    # Requests before the marks (an earlier row) do not count.
    log(front, ("GET", f"{PREFIX}mvn/od/a.jar"))
    log(upstream, ("GET", "/maven/on_demand/a.jar"))
    return one, stack, str(root), [str(jar)], front, upstream


def test_both_requests_after_the_marks_count(tmp_path):
    one, stack, root, files, front, upstream = setup(tmp_path)
    marks = _log_end(front), _log_end(upstream)
    log(front, ("GET", f"{PREFIX}mvn/od/a.jar?x=1"))
    log(upstream, ("GET", "/maven/on_demand/a.jar"))
    reached, detail = tamper_reached(one, stack, root, files, *marks)
    assert reached, detail
    assert "asked the front door for 1 of 1" in detail and "fetched 1 of 1" in detail


def test_a_client_that_never_asked_does_not_count(tmp_path):
    one, stack, root, files, front, upstream = setup(tmp_path)
    marks = _log_end(front), _log_end(upstream)
    log(front, ("GET", f"{PREFIX}mvn/od/a.pom"), ("HEAD", f"{PREFIX}mvn/od/a.jar"))
    log(upstream, ("GET", "/maven/on_demand/a.jar"))
    reached, detail = tamper_reached(one, stack, root, files, *marks)
    assert not reached and "NEVER ASKED" in detail


def test_nothing_fetched_from_the_upstream_does_not_count(tmp_path):
    one, stack, root, files, front, upstream = setup(tmp_path)
    marks = _log_end(front), _log_end(upstream)
    log(front, ("GET", f"{PREFIX}mvn/od/a.jar"))
    reached, detail = tamper_reached(one, stack, root, files, *marks)
    assert not reached and "NO tampered file was fetched" in detail


def test_the_verdicts_own_probe_does_not_pass_for_the_client(tmp_path):
    """First-time pull-through content has no row to mark failed, so the run asks the
    app for the file once more through the front door (``verdicts``' probe), which makes
    the app fetch the tampered file again. Those requests come after the client ran: a
    client that never asked for the tampered file must not pass because of them (review
    #15 of bba490f: the marks were read after the probe)."""
    one, stack, root, files, front, upstream = setup(tmp_path)
    marks = _log_end(front), _log_end(upstream)
    log(front, ("GET", f"{PREFIX}mvn/od/a.pom"))  # the client: fails before the jar
    client_ran = _log_end(front), _log_end(upstream)
    log(front, ("GET", f"{PREFIX}mvn/od/a.jar"))  # the verdict's probe...
    log(upstream, ("GET", "/maven/on_demand/a.jar"))  # ...and the app's fetch for it
    reached, detail = tamper_reached(one, stack, root, files, *marks, *client_ran)
    assert not reached and "NEVER ASKED" in detail and "NO tampered file" in detail
