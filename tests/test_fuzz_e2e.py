"""Hostile request targets and headers against a running app (granian, PostgreSQL): no 5xx,
no byte after a declared body, every 206 exactly the bytes its ``Content-Range`` names,
no guarded byte without credentials (issue #17). Published, on-demand, streamed, guarded
and object-storage (S3 on moto, proxied and redirected) distributions.

Requests go out byte for byte over a plain socket (httpx and curl normalise paths) and
answers are read strictly (:mod:`tests.adversarial`). Hypothesis draws the requests;
``HYPOTHESIS_PROFILE=adversarial`` (``make adversarial``) tries 25 times as many.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from dataclasses import dataclass
from email.utils import format_datetime
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulp_content_asgi.devtools import data
from pulp_content_asgi.resolution.checkpoints import format_timestamp
from tests import adversarial
from tests.adversarial import FAST_HASHERS, Corpus, examples, exchange, judge, request_bytes
from tests.helpers import content_app, on_demand, s3_domain, stop_server, unique_name

pytestmark = pytest.mark.adversarial

PREFIX = "/pulp/content/"


def fuzz(count: int) -> settings:
    """``count`` examples in the CI slice (:func:`tests.adversarial.examples`), no deadline
    (a busy machine is slow), no health check (the examples are requests, not data)."""
    return settings(max_examples=examples(count), deadline=None,
                    suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Entry:
    """A URL of the world and what answers it."""

    target: bytes  # path, percent-encoded as a client sends it
    guarded: bool = False
    kind: str = "published"


@dataclass
class World:
    server: object
    corpus: Corpus
    entries: list[Entry]

    def targets(self) -> list[bytes]:
        return [e.target for e in self.entries]


def _target(*segments: str) -> bytes:
    return "/".join(quote(s, safe="/:@!$&'()*+,=") for s in segments).encode()


_sizes = iter(range(10_000, 10_000_000, 7919))


def _blob() -> bytes:
    """Random bytes of a size no other corpus file has."""
    return os.urandom(next(_sizes))


# --- the worlds -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_server(cache_settings):
    """The app with the response cache on (a private Redis): a world URL asked twice is
    answered from the cache the second time, so both paths meet hostile input."""
    running = content_app(env={**FAST_HASHERS, **cache_settings})
    yield running
    stop_server(running)


def _guards(u: str, pki: dict) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from pulp_certguard.app.models import X509CertGuard
    from pulpcore.app.models import (
        CompositeContentGuard,
        ContentRedirectContentGuard,
        HeaderContentGuard,
        RBACContentGuard,
    )
    from pulpcore.app.role_util import assign_role

    header = HeaderContentGuard.objects.create(name=f"fz-hdr-{u}", header_name="x-secret",
                                               header_value="swordfish")
    jq = HeaderContentGuard.objects.create(name=f"fz-jq-{u}", header_name="x-identity",
                                           header_value="acme", jq_filter=".identity.org")
    rbac = RBACContentGuard.objects.create(name=f"fz-rbac-{u}")
    user = get_user_model().objects.create(username=f"fz-{u}",
                                           password=adversarial.md5_password("pw"))
    assign_role("core.rbaccontentguard_downloader", user, rbac)
    redirect = ContentRedirectContentGuard.objects.create(name=f"fz-redir-{u}")
    x509 = X509CertGuard.objects.create(name=f"fz-x509-{u}", ca_certificate=pki["ca_pem"])
    composite = CompositeContentGuard.objects.create(name=f"fz-comp-{u}")
    composite.guards.set([redirect, header])
    return {"header": header, "jq": jq, "rbac": rbac, "redirect": redirect, "x509": x509,
            "composite": composite}


@pytest.fixture(scope="module")
def pki():
    """A CA (its PEM) and PEM certificates: one it signed, one of a rogue CA, and a rogue
    one of 16 KiB or more once percent-encoded (as a proxy sends X-CLIENT-CERT)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.adversarial import certificate, pem

    ca_key, rogue_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("Fuzz CA", ca_key, "Fuzz CA", ca_key, ca=True)
    big = pem(certificate("big", rogue_key, "Rogue CA", key, padding=480))
    return {"ca_pem": pem(ca), "client": pem(certificate("client", ca_key, "Fuzz CA", key)),
            "rogue": pem(certificate("rogue", rogue_key, "Rogue CA", key)), "big": big}


@pytest.fixture(scope="module")
def world(fuzz_server, upstream, pki) -> World:
    u = unique_name()
    corpus, entries = Corpus(), []
    published = {"small.txt": b"small\n", "empty.dat": b"", "odd name: 100%.txt": _blob(),
                 "dir/sub/deep.bin": _blob(), "\u00fcn\u00ef.bin": _blob(),
                 "big.bin": os.urandom(300_001), "inline.bin": _blob()}
    for blob in published.values():
        corpus.add(blob)
    repo = data.repository(f"fz-pub-{u}", published)
    pub = data.distribute(f"fz-pub-{u}", publication=data.publish(repo.latest_version()))
    entries += [Entry(_target(PREFIX + pub.base_path, n)) for n in published]
    entries += [Entry(t, kind="listing") for t in (
        _target(PREFIX + pub.base_path) + b"/", _target(PREFIX), _target(PREFIX + pub.base_path),
        _target(PREFIX + pub.base_path, "dir/"))]
    checkpointed = data.repository(f"fz-ckpt-{u}", {"ck.bin": corpus.add(_blob())})
    publication = data.publish(checkpointed.latest_version(), checkpoint=True)
    ckpt = data.distribute(f"fz-ckpt-{u}", repository=checkpointed, checkpoint=True)
    stamp = format_timestamp(publication.pulp_created)
    entries += [Entry(_target(PREFIX + ckpt.base_path, stamp, "ck.bin"), kind="checkpoint"),
                Entry(_target(PREFIX + ckpt.base_path) + b"/", kind="listing"),
                Entry(_target(PREFIX + ckpt.base_path, stamp) + b"/", kind="listing")]
    for policy in ("on_demand", "streamed"):
        files = {f"{policy}-{i}.bin": _blob() for i in range(2)}
        for blob in files.values():
            corpus.add(blob)
        dist, _, _ = on_demand(upstream, files, policy=policy)
        entries += [Entry(_target(PREFIX + dist.base_path, n), kind=policy) for n in files]
    for kind, guard in _guards(u, pki).items():
        marker = f"SECRET-{kind}-{u}".encode()
        corpus.secrets.append(marker)
        blob = corpus.add(adversarial.secret_file(marker, next(_sizes)), guarded=True)
        repo = data.repository(f"fz-{kind}-{u}", {"secret.bin": blob})
        dist = data.distribute(f"fz-{kind}-{u}", content_guard=guard,
                               publication=data.publish(repo.latest_version()))
        entries += [Entry(_target(PREFIX + dist.base_path, "secret.bin"), True, kind),
                    Entry(_target(PREFIX + dist.base_path) + b"/", True, kind)]
    return World(fuzz_server, corpus, entries)


@pytest.fixture(scope="module")
def storage_server():
    running = content_app(env={"PULP_DOMAIN_ENABLED": "true", **FAST_HASHERS},
                          probe="/pulp/content/default/")
    yield running
    stop_server(running)


def _in_domain(domain, name: str, files: dict[str, bytes], guard_name: str | None = None):
    """A published distribution of ``files`` in ``domain``, guarded by a new header guard
    (in that domain) when ``guard_name`` is given."""
    from pulpcore.app.models import Domain, HeaderContentGuard
    from pulpcore.app.util import set_domain

    default = Domain.objects.get(name="default")
    set_domain(domain)
    try:
        guard = None if guard_name is None else HeaderContentGuard.objects.create(
            name=guard_name, header_name="x-secret", header_value="swordfish")
        repo = data.repository(name, files)
        return data.distribute(name, content_guard=guard,
                               publication=data.publish(repo.latest_version()))
    finally:
        set_domain(default)


@pytest.fixture(scope="module")
def storage_world(storage_server, s3) -> World:
    """Object storage behind the domain-enabled app: a proxied bucket, a redirected one,
    a guarded distribution in each (its own buckets), and the default domain."""
    from pulpcore.app.models import Domain

    u = unique_name()
    corpus, entries = Corpus(), []
    for redirect in (False, True):
        for guarded in (False, True):
            domain = s3_domain(s3, redirect=redirect)
            kind = ("redirect" if redirect else "proxied") + ("-guarded" if guarded else "")
            if guarded:
                marker = f"SECRET-{kind}-{u}".encode()
                corpus.secrets.append(marker)
                blob = corpus.add(adversarial.secret_file(marker, next(_sizes)), True)
                corpus.guarded_buckets.add(domain.storage_settings["bucket_name"])
                files = {"secret.bin": blob}
            else:
                files = {"big.bin": corpus.add(_blob()), "a b.txt": corpus.add(_blob())}
            dist = _in_domain(domain, f"fz-{kind}-{u}", files,
                              f"fz-{kind}-{u}" if guarded else None)
            entries += [Entry(_target(f"{PREFIX}{domain.name}/{dist.base_path}", n), guarded,
                              kind) for n in files]
    files = {"local.bin": corpus.add(_blob())}
    dist = _in_domain(Domain.objects.get(name="default"), f"fz-local-{u}", files)
    entries += [Entry(_target(f"{PREFIX}default/{dist.base_path}", "local.bin")),
                Entry(_target(f"{PREFIX}default/"), kind="listing"),
                Entry(_target(f"{PREFIX}nowhere-{u}/"), kind="listing")]
    return World(storage_server, corpus, entries)


# --- strategies ---------------------------------------------------------------------------

#: What hostile clients put into paths: dot segments (plain, encoded, half-encoded),
#: slashes (doubled, encoded, backslashes), parameters, NUL, invalid and overlong UTF-8,
#: bidi overrides, fullwidth solidus, broken and double percent-encodings, CR LF.
INSERTS = [b"/", b"//", b"./", b"../", b"/./", b"/../", b"%2e/", b"%2E%2E/", b".%2e/",
           b"%2e%2e%2f", b"%2f", b"%2F..%2F", b"\\", b"%5c", b"..\\", b";x=1", b";",
           b"%00", b"%ff", b"\xff", b"\xc0\xaf", b"%c0%af", b"%c0%ae%c0%ae/", b"%e2%80%ae",
           b"%ef%bc%8f", b"~", b"*", b"%", b"%%", b"%2", b"%zz", b"?", b"#", b"%23", b"%3f",
           b" ", b"%20", b"\t", b"%09", b"\r\n", b"\x00", b"%25", b"%252e", b"%252f", b"..",
           b".", b"\xe2\x80\xae", b"A", b"%41", b"%0d%0aX-Injected:%20yes", b"&", b"=",
           b"%u002e", b"\x7f", b"%7f", b"@", b":", b"http://", b"?expires=1&validate_token=0:0"]


def _encode(raw: bytes, upper: bool, slashes: bool) -> bytes:
    form = "%{:02X}" if upper else "%{:02x}"
    return b"".join(bytes([b]) if b == 0x2F and not slashes else form.format(b).encode()
                    for b in raw)


@st.composite
def hostile_targets(draw, targets: list[bytes]) -> bytes:
    """A request target: raw bytes after the prefix, raw bytes alone, or a real target of
    the world bent one to four times."""
    start = draw(st.integers(0, 9))
    if start == 0:
        return PREFIX.encode() + draw(st.binary(max_size=200))
    if start == 1:
        return draw(st.binary(max_size=64))
    target = bytearray(draw(st.sampled_from(targets)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 10))
        at = draw(st.integers(0, len(target)))
        if op == 0 and target:  # one byte percent-encoded
            i = min(at, len(target) - 1)
            target[i:i + 1] = _encode(bytes(target[i:i + 1]), draw(st.booleans()), True)
        elif op == 1:  # all of it percent-encoded (but the first slash)
            target[1:] = _encode(bytes(target[1:]), draw(st.booleans()), draw(st.booleans()))
        elif op in (2, 3):
            target[at:at] = draw(st.sampled_from(INSERTS))
        elif op == 4:
            target[at:at] = bytes([draw(st.integers(0, 255))])
        elif op == 5:
            end = draw(st.integers(at, len(target)))
            target[at:end] = bytes(target[at:end]).swapcase()
        elif op == 6:  # around the 4096-byte path limit, and far past it
            size = draw(st.sampled_from([2040, 2047, 2048, 2049, 4000, 30000]))
            target[at:at] = b"a/" * size
        elif op == 7:  # double percent-encoding
            target = bytearray(bytes(target).replace(b"%", b"%25"))
        elif op == 8:
            target += b"?" + draw(st.binary(max_size=40))
        elif op == 9:
            target[0:0] = draw(st.sampled_from([b"http://127.0.0.1", b"http://evil.example",
                                                b"/", b"//", b"https://a@b"]))
        else:
            del target[at:draw(st.integers(at, len(target)))]
    return bytes(target)


METHODS = [b"GET"] * 6 + [b"HEAD"] * 3 + [b"POST", b"OPTIONS", b"get", b"PROPFIND",
                                         b"G\xffT", b"TRACE"]


def _send(world: World, section: str, method: bytes, target: bytes,
          headers: list[tuple[bytes, bytes]] = (), host: bytes | None = None) -> list:
    raw = request_bytes(world.server.base, method, target, headers, host)
    what = f"{method!r} {target[:300]!r} headers={list(headers)[:8]!r}"[:1000]
    answers = exchange(world.server.base, raw, head=method == b"HEAD")
    return judge(adversarial.TALLIES[section], world.corpus, answers, what,
                 head=method == b"HEAD")


@fuzz(150)
@given(data=st.data())
def test_hostile_request_targets(world, data):
    method = data.draw(st.sampled_from(METHODS), label="method")
    target = data.draw(hostile_targets(world.targets()), label="target")
    _send(world, "targets", method, target)


@fuzz(60)
@given(data=st.data())
def test_hostile_request_targets_storage(storage_world, data):
    method = data.draw(st.sampled_from(METHODS), label="method")
    target = data.draw(hostile_targets(storage_world.targets()), label="target")
    _send(storage_world, "storage", method, target)


# --- headers ------------------------------------------------------------------------------

_POSITIONS = st.one_of(st.integers(0, 400_000), st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**40]), st.just("9" * 5000), st.just("0" * 40 + "1"))
_RANGE_SPECS = st.one_of(
    st.builds("{}-{}".format, _POSITIONS, _POSITIONS),
    st.builds("{}-".format, _POSITIONS),
    st.builds("-{}".format, _POSITIONS),
    st.builds("-{}-{}".format, _POSITIONS, _POSITIONS),
    st.builds("{}--{}".format, _POSITIONS, _POSITIONS),
    st.sampled_from(["", "-", "--", "a-b", "1.5-2", "0x10-0x20", " 1 - 2 ", "\t1-2", "1-2 ",
                     "\u0663-\u0664", "+1-2", "-0", "0-0", "1-0", "0-", "-1", "ÿ-"]),
)
_HOSTILE_RANGES = st.builds(lambda unit, specs, sep: unit + sep.join(specs),
                            st.sampled_from(["bytes=", "BYTES=", "bytes =", "bytes= ",
                                             "items=", "", "bytes", "bytes=bytes=",
                                             " bytes="]),
                            st.lists(_RANGE_SPECS, max_size=12),
                            st.sampled_from([",", ", ", " ,", ",,", ";", " "]))
# Well-formed ranges whose positions fall inside or just past the world's files (0 B to
# 300 KB): most are satisfiable, so 206s, multipart bodies and their Content-Range are
# checked byte for byte often (the hostile grammar above alone gave 206 on 23 of 5,750
# requests: nearly every one had a part that makes the whole header 416 or ignored).
_NEAR = st.one_of(st.integers(0, 100), st.integers(0, 120_000))
_VALID_RANGES = st.builds(
    lambda specs, sep: "bytes=" + sep.join(specs),
    st.lists(st.one_of(st.tuples(_NEAR, _NEAR).map(lambda p: f"{min(p)}-{max(p)}"),
                       st.builds("{}-".format, _NEAR), st.builds("-{}".format, _NEAR)),
             min_size=1, max_size=4),
    st.sampled_from([",", ", "]))
_RANGES = st.one_of(_VALID_RANGES, _HOSTILE_RANGES)
_DATES = st.one_of(
    st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31),
                 timezones=st.just(datetime.UTC)).map(lambda d: format_datetime(d, True)),
    st.sampled_from(["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                     "Sun Nov  6 08:49:37 1994", "0", "-1", "99999999999999999999",
                     "Sun, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0000 00:00:00 GMT",
                     "Thu, 01 Jan 1970 00:00:00 GMT", "Sat, 29 Feb 2025 00:00:00 GMT",
                     "Sun, 06 Nov 1994 25:61:61 GMT", "yesterday", "Sun, 06 Nov 1994"]),
    st.text(max_size=40))
_TEXT = st.text(max_size=80)


def _etags(world: World):
    known = sorted(world.corpus.by_etag)
    one = st.one_of(st.sampled_from(known), st.sampled_from(known).map("W/{}".format),
                    st.sampled_from(['*', '""', '"', 'W/', 'W/"', '"a"b"', '\'x\'', ',']),
                    _TEXT)
    return st.lists(one, min_size=1, max_size=5).map(", ".join)


def _b64(strategy):
    return strategy.map(lambda raw: base64.b64encode(raw).decode())


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["identity", "org", "x"]), inner,
                                       max_size=3), max_leaves=8)


def _header_values(world: World, pki: dict) -> dict[str, st.SearchStrategy]:
    """Values worth trying for each header that something in the app reads."""
    bad_pem = st.sampled_from([pki["rogue"], pki["big"], pki["client"][:300],
                               pki["client"].replace("M", "N", 3)])
    cert = st.one_of(bad_pem.map(quote), bad_pem.map(lambda p: p.strip().replace("\n", " ")),
                     st.just(quote(pki["big"])),
                     _TEXT.map(lambda t: f"-----BEGIN CERTIFICATE-----{t}"
                                         "-----END CERTIFICATE-----"),
                     _TEXT, st.binary(max_size=40).map(quote),
                     st.just("%C3%A9" * 10), st.just("\u00e9\u00ff"))
    credentials = st.one_of(_b64(st.binary(max_size=40)), _TEXT,
                            _b64(_JSON.map(lambda v: json.dumps(v).encode())),
                            _b64(st.binary(max_size=40).map(lambda b: b"\xff" + b)))
    basic = st.one_of(_b64(st.binary(max_size=40)),
                      _b64(st.tuples(st.binary(max_size=20), st.binary(max_size=20))
                           .map(lambda t: t[0] + b":" + t[1])),
                      st.just(base64.b64encode(b"a\x00b:pw").decode()),
                      st.just(base64.b64encode(b"\xff\xfe:\x00").decode()), _TEXT)
    return {
        "Range": _RANGES,
        "If-Range": st.one_of(_etags(world), _DATES),
        "If-Match": _etags(world),
        "If-None-Match": _etags(world),
        "If-Modified-Since": _DATES,
        "If-Unmodified-Since": _DATES,
        "Cookie": st.one_of(_TEXT, st.just("sessionid=" + "x" * 8000),
                            st.lists(st.tuples(_TEXT, _TEXT), max_size=20).map(
                                lambda pairs: "; ".join(f"{k}={v}" for k, v in pairs))),
        "Authorization": st.one_of(basic.map("Basic {}".format), basic.map("basic {}".format),
                                   _TEXT.map("Bearer {}".format), st.just("Basic"),
                                   st.just("Digest username=x"), _TEXT),
        "X-CLIENT-CERT": cert,
        "X-Secret": credentials,
        "X-Identity": credentials,
        "Host": st.one_of(st.sampled_from(["[", "a:b:c", "", "\u00fcn\u00ef", "x" * 5000,
                                           "127.0.0.1:0", "[::1]:99999", "a/b", "@"]), _TEXT),
        "Correlation-ID": _TEXT,
        "X-Forwarded-For": _TEXT,
        "X-Forwarded-Proto": _TEXT,
        "X-Forwarded-Host": _TEXT,
        "Accept-Encoding": st.sampled_from(["gzip", "br", "*", "identity;q=0", "", "\u00e9"]),
    }


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-_ABCXYZ0123456789!#$%&'*+.^`|~", min_size=1,
                 max_size=20).filter(lambda n: n.lower() not in (
                     "content-length", "transfer-encoding", "connection", "expect", "upgrade",
                     "host", "te"))


def _encoded(value: str, data) -> bytes:
    """Header bytes: UTF-8 (non-ASCII bytes on the wire) or latin-1, never CR or LF."""
    encoding = data.draw(st.sampled_from(["utf-8", "latin-1"]), label="encoding")
    raw = value.encode(encoding, errors="replace")
    return raw.replace(b"\r", b"").replace(b"\n", b"")


def _hostile_headers(world: World, pki: dict, data) -> tuple[list, bytes | None]:
    values = _header_values(world, pki)
    names = data.draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=5),
                      label="headers")  # repeats: duplicated headers
    headers, host = [], None
    for name in names:
        value = _encoded(data.draw(values[name], label=name), data)
        if name == "Host":
            host = value
        else:
            headers.append((name.encode(), value))
    for _ in range(data.draw(st.integers(0, 2), label="others")):
        headers.append((data.draw(_TOKEN).encode(),
                        data.draw(st.binary(max_size=60)).replace(b"\r", b"").replace(b"\n",
                                                                                       b"")))
    return headers, host


def _fuzz_headers(world: World, pki: dict, section: str, data) -> None:
    entry = data.draw(st.sampled_from(world.entries), label="entry")
    method = data.draw(st.sampled_from([b"GET"] * 3 + [b"HEAD"]), label="method")
    headers, host = _hostile_headers(world, pki, data)
    _send(world, section, method, entry.target, headers, host)


@fuzz(150)
@given(data=st.data())
def test_hostile_headers(world, pki, data):
    _fuzz_headers(world, pki, "headers", data)


@fuzz(60)
@given(data=st.data())
def test_hostile_headers_storage(storage_world, pki, data):
    _fuzz_headers(storage_world, pki, "storage", data)


@fuzz(80)
@given(data=st.data())
def test_ranges_are_exact(world, data):
    """Range alone, on every file that serves ranges (published, on-demand, streamed):
    a 206 is exactly the bytes its Content-Range names, part by part."""
    entry = data.draw(st.sampled_from([e for e in world.entries
                                       if not e.guarded and e.kind != "listing"]))
    value = data.draw(_RANGES, label="range").encode()
    _send(world, "headers", b"GET", entry.target, [(b"Range", value)])


@fuzz(40)
@given(data=st.data())
def test_ranges_are_exact_storage(storage_world, data):
    entry = data.draw(st.sampled_from([e for e in storage_world.entries
                                       if not e.guarded and e.kind != "listing"]))
    value = data.draw(_RANGES, label="range").encode()
    _send(storage_world, "storage", b"GET", entry.target, [(b"Range", value)])


# --- framing: bodies, Transfer-Encoding, Content-Length, Expect, Upgrade, pipelining -----

_FRAMING = {
    b"Transfer-Encoding": st.sampled_from([b"chunked", b"Chunked", b" chunked", b"chunked ",
                                           b"identity", b"gzip, chunked", b"chunked, gzip",
                                           b"xchunked", b"chunked\x0b", b"", b"\xffchunked"]),
    # Content-Length: drawn around the body's real length (_content_length).
    b"Content-Length": st.sampled_from([b"-1", b"1, 2", b"5,5", b"0x10", b"+5", b" 5", b"",
                                        b"9" * 30, b"\xff"]),
    b"Expect": st.sampled_from([b"100-continue", b"100-Continue", b"200-ok", b""]),
    b"Upgrade": st.sampled_from([b"websocket", b"h2c", b"HTTP/2.0", b"TLS/1.0", b"foo"]),
    b"Connection": st.sampled_from([b"keep-alive", b"Upgrade", b"close, Upgrade",
                                    b"keep-alive, TE", b"HTTP2-Settings", b"x"]),
    b"TE": st.sampled_from([b"trailers", b"chunked", b"gzip", b"\xff"]),
    b"HTTP2-Settings": st.sampled_from([b"AAMAAABkAARAAAAA", b"", b"!!"]),
}
_BODIES = st.one_of(st.binary(max_size=64), st.sampled_from([
    b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhel", b"ffffffffffffffffff\r\n",
    b"0\r\nX-Trailer: 1\r\n\r\n", b"-1\r\n\r\n", b"5;ext=1\r\nhello\r\n0\r\n\r\n"]))


def _content_length(body: bytes):
    """The body's length, a byte more or less (the next request then starts a byte early or
    late: a 400), or a value no parser should take. Never much more than the bytes sent:
    the server would rightly wait for a body that never comes."""
    return st.one_of(st.integers(-2, 2).map(lambda d: str(max(0, len(body) + d)).encode()),
                     _FRAMING[b"Content-Length"])


@pytest.fixture(scope="module")
def uvicorn_server(cache_settings, world):
    """The same app under uvicorn (httptools parses the framing, not hyper), serving the
    world's rows."""
    running = content_app("uvicorn", env={**FAST_HASHERS, **cache_settings})
    yield running
    stop_server(running)


@fuzz(100)
@given(data=st.data())
def test_hostile_framing_keeps_answers_in_step(world, uvicorn_server, data):
    """A request with hostile framing headers and a body, then a second request on the
    same connection for a published file (HTTP/1.1 pipelining). The answers are framed
    exactly (or the last one visibly cut) and never 5xx (as every fuzzer checks); there
    are at most two; and the second, when there is one, is the file whole or a 4xx (RFC
    9112 section 6.3: a server that cannot tell where the body ends answers 400 and
    closes). The bodies drawn are never requests themselves, so this does not catch a
    body answered as a request: test_hostile_wire_e2e.py's
    test_a_body_is_never_answered_as_a_request does, with ten fixed framings."""
    first = data.draw(st.sampled_from([e for e in world.entries if not e.guarded]),
                      label="entry")
    probe = next(e for e in world.entries if e.target.endswith(b"/small.txt"))
    method = data.draw(st.sampled_from([b"GET", b"GET", b"POST", b"OPTIONS"]), label="method")
    names = data.draw(st.lists(st.sampled_from(sorted(_FRAMING)), min_size=1, max_size=4),
                      label="framing")
    body = data.draw(_BODIES, label="body")
    headers = [(b"Host", b"x"), *((n, data.draw(
        _content_length(body) if n == b"Content-Length" else _FRAMING[n], label=n.decode()))
        for n in names)]
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    raw = (method + b" " + first.target + b" HTTP/1.1\r\n" + head + b"\r\n" + body
           + b"GET " + probe.target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for name, server in (("granian", world.server), ("uvicorn", uvicorn_server)):
        what = f"{name}: {method!r} {first.target!r} {headers!r} body={body!r}"
        answers = [a for a in judge(adversarial.TALLIES["headers"], world.corpus,
                                    exchange(server.base, raw, cut_ok=True), what)
                   if not 100 <= a.status < 200]
        # A server that finds the body's framing broken while it streams the answer
        # closes the connection (granian/hyper does; RFC 9112 section 9.6): that answer
        # is cut where the client can see it, its bytes so far the file's (judge).
        assert all(not a.cut or a.status == 200 for a in answers), what
        assert len(answers) <= 2, f"{what}: {len(answers)} answers to 2 requests"
        if len(answers) == 2:
            second = answers[1]
            assert second.status >= 400 or (second.status == 200
                                            and second.body == b"small\n"), (
                f"{what}: the second answer is {second.status} with {second.body[:80]!r}")


def test_the_worlds_serve_what_the_fuzzers_bend(world, storage_world):
    """The fuzzed URLs are real: each file answers 200 with its bytes (guarded ones 403),
    so a fuzz run that sees only 404s would fail here, not pass silently."""
    for w in (world, storage_world):
        for entry in w.entries:
            if entry.kind == "listing":
                continue
            (answer,) = _send(w, "targets" if w is world else "storage", b"GET", entry.target)
            if entry.guarded:
                assert answer.status == 403, entry
            elif entry.kind.startswith("redirect"):
                assert answer.status == 302, entry
            else:
                assert answer.status == 200, entry
                assert answer.body in w.corpus.by_size.values(), entry
