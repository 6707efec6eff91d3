"""The guard-bypass corpus (issue #17): every content guard pulpcore and pulp_certguard
ship (RBAC, header, env-var header, redirect token, composite, X.509, RHSM), asked for its
file through ~55 spellings of the same path (encodings of the base path, ``//``, ``/./``,
``%2e``, case, trailing dots and slashes, parameters, overlong UTF-8...), guarded
distributions nested under unguarded ones and the reverse, and domain swaps.

Without credentials no spelling yields a content byte. With credentials, every spelling
that names the file once normalised serves it: the corpus proves the guard is evaluated on
the same path that is served, not that every odd path is a 404. Requests go out byte for
byte (:mod:`tests.adversarial`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pulp_content_asgi.devtools import data
from tests import adversarial
from tests.adversarial import (
    FAST_HASHERS,
    Answer,
    Corpus,
    certificate,
    exchange,
    judge,
    pem,
    request_bytes,
)
from tests.helpers import (
    content_app,
    overlapping_distribution,
    stop_server,
    unique_name,
)

pytestmark = pytest.mark.adversarial

P = "/pulp/content/"
F = "file.txt"
SECRET_VAR = "ADVERSARIAL_GUARD_SECRET"
SECRET = "s3cr\u00e9t"
RHSM_BASE = "Default_Organization/Library/custom/foo/foo"
RHSM = os.path.join(os.path.dirname(__import__("pulp_certguard").__file__), "tests",
                    "functional", "artifacts", "rhsm")
Headers = list[tuple[bytes, bytes]]


def _enc(text: str, upper: bool = True, slashes: bool = False) -> str:
    form = "%{:02X}" if upper else "%{:02x}"
    return "".join(c if c == "/" and not slashes else "".join(
        form.format(b) for b in c.encode()) for c in text)


def variants(base: str, port: int) -> list[tuple[str, str, bool | None]]:
    """(name, target, served) for the file ``F`` of the distribution at ``base``.

    ``served``: True when the target names the file once normalised (with credentials:
    200 and its bytes; without: 403, the guard's refusal); False when it names nothing
    (a 4xx or a redirect either way, never the file); None: only the refusal without
    credentials is checked.
    """
    b0 = _enc(base[0]) + base[1:]
    served = [
        ("canonical", f"{P}{base}/{F}"),
        ("leading //", f"/{P}{base}/{F}"),
        ("// before the base path", f"{P}/{base}/{F}"),
        ("// after the base path", f"{P}{base}//{F}"),
        ("/// everywhere", f"/pulp///content///{base}///{F}"),
        ("first byte of the base path encoded", f"{P}{b0}/{F}"),
        ("base path encoded, lower-case hex", f"{P}{_enc(base, upper=False)}/{F}"),
        ("base path encoded, slashes too", f"{P}{_enc(base, slashes=True)}/{F}"),
        ("slash after the base path as %2F", f"{P}{base}%2F{F}"),
        ("slash after the base path as %2f", f"{P}{base}%2f{F}"),
        ("everything encoded", "/" + _enc(f"{P[1:]}{base}/{F}", slashes=True)),
        ("file name encoded", f"{P}{base}/{_enc(F[0])}{F[1:]}"),
        ("query noise", f"{P}{base}/{F}?a=1&b=%00&c"),
    ]
    refused = [
        ("/./ before the base path", f"{P}./{base}/{F}"),
        ("/./ after the base path", f"{P}{base}/./{F}"),
        ("../ into the base path", f"{P}x/../{base}/{F}"),
        ("../ out of the base path", f"{P}{base}/x/../{F}"),
        ("%2e segment", f"{P}{base}/%2e/{F}"),
        ("%2e%2e into the base path", f"{P}x/%2e%2e/{base}/{F}"),
        ("%2E%2E into the base path", f"{P}x/%2E%2E/{base}/{F}"),
        (".%2e into the base path", f"{P}x/.%2e/{base}/{F}"),
        ("%2e. into the base path", f"{P}x/%2e./{base}/{F}"),
        ("../ with encoded slashes", f"{P}x%2F..%2F{base}/{F}"),
        ("double-encoded ..", f"{P}x/%252e%252e/{base}/{F}"),
        ("../ beyond the prefix", f"{P}../content/{base}/{F}"),
        ("base path upper case", f"{P}{base.upper()}/{F}"),
        ("file name upper case", f"{P}{base}/{F.upper()}"),
        ("trailing dot on the base path", f"{P}{base}./{F}"),
        ("trailing dot on the file", f"{P}{base}/{F}."),
        ("trailing %2e on the file", f"{P}{base}/{F}%2e"),
        ("trailing slash on the file", f"{P}{base}/{F}/"),
        ("two trailing slashes on the file", f"{P}{base}/{F}//"),
        ("backslash", f"{P}{base}\\{F}"),
        ("encoded backslash", f"{P}{base}%5C{F}"),
        ("parameter on the base path", f"{P}{base};x=1/{F}"),
        ("parameter on the file", f"{P}{base}/{F};x=1"),
        ("NUL after the file", f"{P}{base}/{F}%00"),
        ("NUL after the base path", f"{P}{base}%00/{F}"),
        ("overlong UTF-8 slash", f"{P}{base}%C0%AF{F}"),
        ("3-byte overlong UTF-8 slash", f"{P}{base}%E0%80%AF{F}"),
        ("fullwidth solidus", f"{P}{base}%EF%BC%8F{F}"),
        ("invalid UTF-8", f"{P}{base}/{F}%FF"),
        ("space after the base path", f"{P}{base}%20/{F}"),
        ("space before the base path", f"{P}%20{base}/{F}"),
        ("tab after the base path", f"{P}{base}%09/{F}"),
        ("bidi override", f"{P}{base}%E2%80%AE/{F}"),
        ("encoded fragment", f"{P}{base}/{F}%23x"),
        ("prefix without its slash", f"/pulp/content{base}/{F}"),
        ("prefix upper case", f"/pulp/Content/{base}/{F}"),
        ("prefix extended", f"/pulp/contentx/{base}/{F}"),
        ("path over 4096 bytes", f"{P}{base}/{'a/' * 2100}{F}"),
        ("distribution root without its slash", f"{P}{base}"),
        ("distribution listing", f"{P}{base}/"),
    ]
    unchecked = [
        ("absolute form", f"http://127.0.0.1:{port}{P}{base}/{F}"),
        ("forged redirect token", f"{P}{base}/{F}?expires=99999999999&validate_token=00:00"),
        ("raw fragment", f"{P}{base}/{F}#x"),
    ]
    return ([(n, t, True) for n, t in served] + [(n, t, False) for n, t in refused]
            + [(n, t, None) for n, t in unchecked])


@dataclass
class Guarded:
    """A guarded distribution and how to ask with (or with wrong) credentials."""

    kind: str
    base: str
    blob: bytes
    #: (target, extra headers) with valid credentials for ``target``.
    allowed: Callable[[str], tuple[str, Headers]]
    #: The same with wrong credentials.
    wrong: Callable[[str], tuple[str, Headers]]


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode()).decode().encode()


def _header(name: bytes, value: bytes) -> Callable[[str], tuple[str, Headers]]:
    return lambda target: (target, [(name, value)])


@pytest.fixture(scope="module", params=["uncached", "cached"])
def guard_server(request):
    """The app without and with the response cache (whose hits must not skip guards),
    with the env-var guard's secret in its environment."""
    cache = request.getfixturevalue("cache_settings") if request.param == "cached" else {}
    running = content_app(env={**FAST_HASHERS, **cache, SECRET_VAR: SECRET,
                               "PULP_ENVVAR_HEADER_CONTENT_GUARD_ALLOWED_VARS":
                                   f'["{SECRET_VAR}"]'})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


def _distribute(corpus: Corpus, kind: str, base: str, guard) -> bytes:
    marker = f"SECRET-{kind}-{unique_name()}".encode()
    corpus.secrets.append(marker)
    blob = corpus.add(adversarial.secret_file(marker, 3000 + 7 * len(corpus.by_size)), True)
    repo = data.repository(f"corpus-{kind}-{unique_name()}", {F: blob})
    data.distribute(base, name=f"corpus-{kind}-{unique_name()}", content_guard=guard,
                    publication=data.publish(repo.latest_version()))
    return blob


def _signed(guard, server) -> Callable[[str], tuple[str, Headers]]:
    """Credentials of a redirect guard: the target signed as pulp-api signs it."""

    def sign(target: str) -> tuple[str, Headers]:
        return guard.preauthenticate_url(server.base + target)[len(server.base):], []

    return sign


@pytest.fixture(scope="module")
def guarded(guard_server, corpus) -> dict[str, Guarded]:
    """One distribution per guard type, each with its own secret file."""
    from django.contrib.auth import get_user_model
    from pulp_certguard.app.models import RHSMCertGuard, X509CertGuard
    from pulp_file.app.models import FileDistribution
    from pulpcore.app.models import (
        CompositeContentGuard,
        ContentRedirectContentGuard,
        EnvVarHeaderContentGuard,
        HeaderContentGuard,
        RBACContentGuard,
    )
    from pulpcore.app.role_util import assign_role

    u = unique_name()
    found: dict[str, Guarded] = {}

    def add(kind: str, guard, allowed, wrong, base: str | None = None) -> None:
        base = base or f"corpus-{kind}-{u}"
        found[kind] = Guarded(kind, base, _distribute(corpus, kind, base, guard), allowed,
                              wrong)

    header = HeaderContentGuard.objects.create(name=f"c-hdr-{u}", header_name="x-secret",
                                               header_value="swordfish")
    add("header", header, _header(b"X-Secret", _b64("swordfish")),
        _header(b"X-Secret", _b64("swordfish ")))
    envvar = EnvVarHeaderContentGuard.objects.create(name=f"c-env-{u}", header_name="x-env",
                                                     env_var=SECRET_VAR)
    add("envvar", envvar, _header(b"X-Env", _b64(SECRET)), _header(b"X-Env", _b64("s3cret")))
    rbac = RBACContentGuard.objects.create(name=f"c-rbac-{u}")
    users = get_user_model().objects
    allowed_user = users.create(username=f"c-ok-{u}", password=adversarial.md5_password("pw"))
    users.create(username=f"c-other-{u}", password=adversarial.md5_password("pw"))
    assign_role("core.rbaccontentguard_downloader", allowed_user, rbac)
    add("rbac", rbac, _header(b"Authorization", b"Basic " + _b64(f"c-ok-{u}:pw")),
        _header(b"Authorization", b"Basic " + _b64(f"c-other-{u}:pw")))
    redirect = ContentRedirectContentGuard.objects.create(name=f"c-redir-{u}")
    other = ContentRedirectContentGuard.objects.create(name=f"c-redir-other-{u}")
    add("redirect", redirect, _signed(redirect, guard_server), _signed(other, guard_server))
    composite = CompositeContentGuard.objects.create(name=f"c-comp-{u}")
    member = HeaderContentGuard.objects.create(name=f"c-member-{u}", header_name="x-key",
                                               header_value="k")
    composite.guards.set([ContentRedirectContentGuard.objects.create(name=f"c-cr-{u}"),
                          member])
    add("composite", composite, _header(b"X-Key", _b64("k")), _header(b"X-Key", _b64("K")))
    ca_key, rogue_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("Corpus CA", ca_key, "Corpus CA", ca_key, ca=True)
    x509 = X509CertGuard.objects.create(name=f"c-x509-{u}", ca_certificate=pem(ca))
    client = quote(pem(certificate("client", ca_key, "Corpus CA", key))).encode()
    rogue = quote(pem(certificate("client", rogue_key, "Corpus CA", key))).encode()
    add("x509", x509, _header(b"X-CLIENT-CERT", client), _header(b"X-CLIENT-CERT", rogue))
    with open(os.path.join(RHSM, "katello-default-ca.crt")) as ca_file:
        rhsm = RHSMCertGuard.objects.create(name=f"c-rhsm-{u}", ca_certificate=ca_file.read())

    def rhsm_cert(name: str) -> bytes:
        with open(os.path.join(RHSM, name)) as cert:
            return quote(cert.read()).encode()

    FileDistribution.objects.filter(base_path=RHSM_BASE).delete()
    add("rhsm", rhsm, _header(b"X-CLIENT-CERT", rhsm_cert("v3/4260035510644027985.pem")),
        _header(b"X-CLIENT-CERT", rhsm_cert("v3/5527980418107729172.pem")), base=RHSM_BASE)
    return found


def send(server, corpus: Corpus, target: str, headers: Headers = (),
         credentials: bool = False) -> Answer:
    """GET ``target`` byte for byte; the one answer, judged (no 5xx, exact ranges, no
    guarded byte unless ``credentials``)."""
    raw = request_bytes(server.base, b"GET", target.encode("latin-1"), list(headers))
    what = f"GET {target[:200]}" + (" with credentials" if credentials else "")
    answers = judge(adversarial.TALLIES["guards"], corpus,
                    exchange(server.base, raw), what, guarded_ok=credentials)
    assert len(answers) <= 1, what
    return answers[0] if answers else Answer(0, [], b"")  # 0: closed without answering


GUARDS = ["rbac", "header", "envvar", "redirect", "composite", "x509", "rhsm"]


@pytest.mark.parametrize("kind", GUARDS)
def test_no_spelling_of_a_guarded_path_serves_it_without_credentials(
        guard_server, corpus, guarded, kind):
    """Every spelling: without credentials (and with wrong ones) no byte and a 4xx or a
    redirect; the spellings that name the file serve it with credentials, and are
    refused with the guard's 403 without."""
    g = guarded[kind]
    port = int(urlsplit(guard_server.base).port)
    wrong_answers: list[str] = []
    for name, target, served in variants(g.base, port):
        bare = send(guard_server, corpus, target)
        if served and bare.status != 403:
            wrong_answers.append(f"{name}: {bare.status} without credentials, not 403")
        elif not 300 <= bare.status < 500 and bare.status != 0:
            wrong_answers.append(f"{name}: {bare.status} without credentials")
        if served is None:
            continue
        wrong = send(guard_server, corpus, *g.wrong(target))
        if served and wrong.status != 403:
            wrong_answers.append(f"{name}: {wrong.status} with wrong credentials, not 403")
        right = send(guard_server, corpus, *g.allowed(target), credentials=True)
        if served and (right.status, right.body) != (200, g.blob):
            wrong_answers.append(f"{name}: {right.status} with credentials, not the file")
        if not served and right.body and g.blob[:64] in right.body:
            wrong_answers.append(f"{name}: the file with credentials ({right.status})")
    assert not wrong_answers, "\n".join(wrong_answers)


def test_a_redirect_token_opens_only_the_path_it_was_signed_for(guard_server, corpus):
    """Two distributions share one redirect guard: a token signed for the first one's
    file opens no spelling of the second one's."""
    from pulpcore.app.models import ContentRedirectContentGuard

    u = unique_name()
    guard = ContentRedirectContentGuard.objects.create(name=f"c-shared-{u}")
    _distribute(corpus, "shared-a", f"corpus-shared-a-{u}", guard)
    _distribute(corpus, "shared-b", f"corpus-shared-b-{u}", guard)
    signed = guard.preauthenticate_url(f"{guard_server.base}{P}corpus-shared-a-{u}/{F}")
    query = urlsplit(signed).query
    port = int(urlsplit(guard_server.base).port)
    for name, target, _ in variants(f"corpus-shared-b-{u}", port):
        joiner = "&" if "?" in target else "?"
        answer = send(guard_server, corpus, f"{target}{joiner}{query}")
        assert 300 <= answer.status < 500 or answer.status == 0, (name, answer.status)


@pytest.fixture(scope="module")
def nested(corpus):
    """``open`` (unguarded) with a guarded ``open/secret`` below it, and ``locked``
    (guarded) with an unguarded ``locked/public`` below it: overlapping base paths, as an
    installation upgraded from before pulpcore's overlap trigger can hold."""
    from pulpcore.app.models import HeaderContentGuard

    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"c-nest-{u}", header_name="x-secret",
                                              header_value="swordfish")
    outer_files = {F: corpus.add(os.urandom(4001)),
                   f"secret/{F}": corpus.add(os.urandom(4003))}
    repo = data.repository(f"nest-open-{u}", outer_files)
    data.distribute(f"nest-open-{u}", publication=data.publish(repo.latest_version()))
    marker = f"SECRET-inner-{u}".encode()
    corpus.secrets.append(marker)
    inner = corpus.add(adversarial.secret_file(marker, 4005), True)
    repo = data.repository(f"nest-inner-{u}", {F: inner})
    overlapping_distribution(f"nest-open-{u}/secret", content_guard=guard,
                             publication=data.publish(repo.latest_version()))
    marker = f"SECRET-outer-{u}".encode()
    corpus.secrets.append(marker)
    locked = corpus.add(adversarial.secret_file(marker, 4007), True)
    repo = data.repository(f"nest-locked-{u}", {F: locked})
    data.distribute(f"nest-locked-{u}", content_guard=guard,
                    publication=data.publish(repo.latest_version()))
    public = corpus.add(os.urandom(4009))
    repo = data.repository(f"nest-public-{u}", {F: public})
    overlapping_distribution(f"nest-locked-{u}/public",
                             publication=data.publish(repo.latest_version()))
    return u, inner, locked, public


def test_guarded_below_unguarded(guard_server, corpus, nested):
    """``open/secret`` is guarded even though ``open`` is not: every spelling of its file
    is refused without credentials and served with them."""
    u, inner, _, _ = nested
    port = int(urlsplit(guard_server.base).port)
    key = [(b"X-Secret", _b64("swordfish"))]
    odd = [("inner slash encoded", f"{P}nest-open-{u}%2Fsecret/{F}", True),
           ("inner slash encoded after", f"{P}nest-open-{u}/secret%2F{F}", True),
           ("inner base case", f"{P}nest-open-{u}/SECRET/{F}", False),
           ("inner base trailing dot", f"{P}nest-open-{u}/secret./{F}", False),
           ("../ across", f"{P}nest-open-{u}/x/../secret/{F}", False),
           ("%2e%2e across", f"{P}nest-open-{u}/x/%2e%2e/secret/{F}", False)]
    for name, target, served in variants(f"nest-open-{u}/secret", port) + odd:
        bare = send(guard_server, corpus, target)
        assert bare.status != 200 or bare.body not in (inner,), name
        if served:
            assert bare.status == 403, (name, bare.status)
            right = send(guard_server, corpus, target, key, credentials=True)
            assert (right.status, right.body) == (200, inner), (name, right.status)


def test_unguarded_below_guarded(guard_server, corpus, nested):
    """``locked/public`` is open, ``locked`` is not: no spelling reaches ``locked``'s
    file through ``public`` without credentials, and ``public`` is served to anyone."""
    u, _, locked, public = nested
    port = int(urlsplit(guard_server.base).port)
    key = [(b"X-Secret", _b64("swordfish"))]
    for name, target, served in variants(f"nest-locked-{u}", port):
        bare = send(guard_server, corpus, target)
        if served:
            assert bare.status == 403, (name, bare.status)
            right = send(guard_server, corpus, target, key, credentials=True)
            assert (right.status, right.body) == (200, locked), (name, right.status)
    escapes = [f"{P}nest-locked-{u}/public/../{F}", f"{P}nest-locked-{u}/public/%2e%2e/{F}",
               f"{P}nest-locked-{u}/public%2F..%2F{F}", f"{P}nest-locked-{u}/publicx/../{F}",
               f"{P}nest-locked-{u}/public/.%2E/{F}", f"{P}nest-locked-{u}/public/..%2f{F}"]
    for target in escapes:
        answer = send(guard_server, corpus, target)
        assert answer.status == 400, (target, answer.status)
    for target in (f"{P}nest-locked-{u}/public/{F}", f"{P}nest-locked-{u}//public/{F}",
                   f"{P}nest-locked-{u}%2Fpublic/{F}", f"{P}nest-locked-{u}/public%2F{F}"):
        answer = send(guard_server, corpus, target)
        assert (answer.status, answer.body) == (200, public), target


@pytest.fixture(scope="module")
def domain_guard_server():
    running = content_app(env={"PULP_DOMAIN_ENABLED": "true"}, probe="/pulp/content/default/")
    yield running
    stop_server(running)


def test_domain_swaps(domain_guard_server, corpus):
    """A guarded distribution in one domain and an unguarded one at the same base path
    in another: spellings that cross domains never serve the guarded file."""
    from pulpcore.app.models import Domain, HeaderContentGuard
    from pulpcore.app.util import set_domain

    u = unique_name()
    default = Domain.objects.get(name="default")
    locked = data.filesystem_domain(f"locked-{u}")
    opened = data.filesystem_domain(f"open-{u}")
    marker = f"SECRET-domain-{u}".encode()
    corpus.secrets.append(marker)
    secret = corpus.add(adversarial.secret_file(marker, 5001), True)
    public = corpus.add(os.urandom(5003))
    base = f"shared-{u}"
    try:
        set_domain(locked)
        guard = HeaderContentGuard.objects.create(name=f"c-dom-{u}", header_name="x-secret",
                                                  header_value="swordfish")
        repo = data.repository(f"dom-locked-{u}", {F: secret})
        data.distribute(base, content_guard=guard,
                        publication=data.publish(repo.latest_version()))
        set_domain(opened)
        repo = data.repository(f"dom-open-{u}", {F: public})
        data.distribute(base, publication=data.publish(repo.latest_version()))
    finally:
        set_domain(default)
    a, b = locked.name, opened.name
    key = [(b"X-Secret", _b64("swordfish"))]
    cases = [
        (f"{P}{a}/{base}/{F}", 403), (f"{P}{b}/{base}/{F}", 200),
        (f"{P}{a}%2F{base}/{F}", 403), (f"{P}/{a}//{base}/{F}", 403),
        (f"{P}{_enc(a)}/{base}/{F}", 403),
        (f"{P}{b}/../{a}/{base}/{F}", 400), (f"{P}{b}%2F..%2F{a}/{base}/{F}", 400),
        (f"{P}{b}/%2e%2e/{a}/{base}/{F}", 400), (f"{P}{a.upper()}/{base}/{F}", 404),
        (f"{P}{b}/{a}/{base}/{F}", 404), (f"{P}default/{base}/{F}", 404),
        (f"{P}{a}./{base}/{F}", 404), (f"{P}{b}/{base}/../../{a}/{base}/{F}", 400),
        (f"{P}{a}/{base}/{F}?pulp_domain={b}", 403),
    ]
    for target, status in cases:
        answer = send(domain_guard_server, corpus, target)
        assert answer.status == status, (target, answer.status)
        if status == 200:
            assert answer.body == public, target
    right = send(domain_guard_server, corpus, f"{P}{a}//{base}/{F}", key, credentials=True)
    assert (right.status, right.body) == (200, secret)


# --- credentials the guards cannot read: a refusal, not a 500 --------------------------------

UNREADABLE = [
    ("header", [(b"X-Secret", "sw\u00f6rdfish".encode("latin-1"))]),  # not ASCII: not Base64
    ("header", [(b"X-Secret", base64.b64encode(b"\xff\xfe"))]),  # Base64 of non-UTF-8
    ("envvar", [(b"X-Env", "\u00e9".encode("latin-1"))]),
    ("composite", [(b"X-Key", "\u00e9".encode("latin-1"))]),
    ("x509", [(b"X-CLIENT-CERT", b"%C3%A9")]),  # not ASCII once unquoted
    ("x509", [(b"X-CLIENT-CERT", "-----BEGIN CERTIFICATE-----\u00e9".encode("latin-1"))]),
    ("rhsm", [(b"X-CLIENT-CERT", b"%FF%FE")]),
    ("rbac", [(b"Authorization", b"Basic " + base64.b64encode(b"a\x00b:pw"))]),  # NUL
    ("rbac", [(b"Authorization", b"Basic " + base64.b64encode(b"ab:p\x00w"))]),
]


@pytest.mark.parametrize(("kind", "headers"), UNREADABLE,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(UNREADABLE)])
def test_unreadable_credentials_are_refused_not_a_500(guard_server, corpus, guarded, kind,
                                                      headers):
    """Found by this suite: pulpcore's guards raise ValueError (UnicodeError, a jq type
    error) or a database DataError (a NUL in a Basic user name) on such headers, which
    pulpcore-content answers 500. A guard that cannot read the credentials refuses."""
    answer = send(guard_server, corpus, f"{P}{guarded[kind].base}/{F}", headers)
    assert answer.status == 403, answer


@pytest.fixture(scope="module")
def jq_guarded(guard_server, corpus):
    from pulpcore.app.models import HeaderContentGuard

    u = unique_name()
    guard = HeaderContentGuard.objects.create(name=f"c-jq-{u}", header_name="x-identity",
                                              header_value="acme", jq_filter=".identity.org")
    base = f"corpus-jq-{u}"
    _distribute(corpus, "jq", base, guard)
    return base


@pytest.mark.parametrize("identity", [b'"a string"', b"[1, 2]", b"\xff\xfe", b"{", b"42",
                                      b'{"identity": "x"}'])
def test_identity_headers_jq_cannot_read_are_refused(guard_server, corpus, jq_guarded,
                                                     identity):
    """A header guard with a jq filter: JSON of the wrong shape (jq raises ValueError),
    bytes that are not UTF-8 (json raises UnicodeDecodeError): 403, not 500."""
    answer = send(guard_server, corpus, f"{P}{jq_guarded}/{F}",
                  [(b"X-Identity", base64.b64encode(identity))])
    assert answer.status == 403, answer
    good = base64.b64encode(b'{"identity": {"org": "acme"}}')
    right = send(guard_server, corpus, f"{P}{jq_guarded}/{F}", [(b"X-Identity", good)],
                 credentials=True)
    assert right.status == 200
