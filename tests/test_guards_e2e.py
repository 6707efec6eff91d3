"""Every content guard pulpcore and pulp_certguard ship, allowing and denying, over HTTP."""

from __future__ import annotations

import base64
import datetime
import json
import os
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulp_certguard.app.models import RHSMCertGuard, X509CertGuard
from pulpcore.app.models import (
    CompositeContentGuard,
    ContentRedirectContentGuard,
    EnvVarHeaderContentGuard,
    HeaderContentGuard,
    RBACContentGuard,
)

from pulp_content_asgi.devtools import data
from tests.helpers import content_app, stop_server, unique_name

FILE = b"guarded bytes\n"


def guarded(unique: str, guard, base_path: str | None = None):
    repo = data.repository(f"guard-{unique}", {"file.txt": FILE})
    publication = data.publish(repo.latest_version())
    base = base_path or f"guarded-{unique}"
    from pulp_file.app.models import FileDistribution

    FileDistribution.objects.filter(base_path=base).delete()
    return data.distribute(base, name=f"guarded-{unique}", publication=publication,
                           content_guard=guard)


def get(server, distribution, path="file.txt", **kwargs):
    return httpx.get(server.url(f"/pulp/content/{distribution.base_path}/{path}"), **kwargs)


@pytest.fixture(scope="module")
def rbac():
    from django.contrib.auth import get_user_model
    from pulpcore.app.role_util import assign_role

    u = unique_name()
    guard = RBACContentGuard.objects.create(name=f"rbac-{u}")
    users = get_user_model().objects
    allowed = users.create_user(f"allowed-{u}", password="open-sesame")
    other = users.create_user(f"other-{u}", password="open-sesame")
    assign_role("core.rbaccontentguard_downloader", allowed, guard)
    return guarded(u, guard), allowed.username, other.username


class TestRBAC:
    def test_user_with_download_role_is_served(self, server, rbac):
        distribution, allowed, _ = rbac
        response = get(server, distribution, auth=(allowed, "open-sesame"))
        assert response.status_code == 200
        assert response.content == FILE

    @pytest.mark.parametrize("who", ["anonymous", "other", "wrong-password"])
    def test_others_are_denied(self, server, rbac, who):
        distribution, allowed, other = rbac
        auth = {"anonymous": None, "other": (other, "open-sesame"),
                "wrong-password": (allowed, "nope")}[who]
        response = get(server, distribution, auth=auth)
        assert response.status_code == 403
        assert response.text.startswith("403: ")


class TestHeaderGuard:
    def test_plain_value(self, server, unique):
        guard = HeaderContentGuard.objects.create(name=f"hdr-{unique}", header_name="x-secret",
                                                  header_value="swordfish")
        distribution = guarded(unique, guard)
        good = base64.b64encode(b"swordfish").decode()
        assert get(server, distribution, headers={"X-Secret": good}).status_code == 200
        denied = get(server, distribution, headers={"X-Secret": base64.b64encode(b"x").decode()})
        assert denied.status_code == 403
        assert denied.text == "403: Access denied."
        assert get(server, distribution).status_code == 403

    def test_jq_filter(self, server, unique):
        guard = HeaderContentGuard.objects.create(
            name=f"jq-{unique}", header_name="x-identity", header_value="acme",
            jq_filter=".identity.org")
        distribution = guarded(unique, guard)
        identity = base64.b64encode(json.dumps({"identity": {"org": "acme"}}).encode()).decode()
        assert get(server, distribution, headers={"X-Identity": identity}).status_code == 200
        other = base64.b64encode(json.dumps({"identity": {"org": "evil"}}).encode()).decode()
        assert get(server, distribution, headers={"X-Identity": other}).status_code == 403


SECRET_VAR = "ENVVAR_HEADER_GUARD_TEST_SECRET"  # pulpcore's functional test's names
SECRET_HEADER = "X-Test-Content-Guard-Header"


@pytest.fixture(scope="module")
def envvar_server():
    """The app with a secret in its environment (with the trailing newline a secret file
    often leaves) and that variable allowed for EnvVarHeaderContentGuard."""
    running = content_app(env={
        SECRET_VAR: "s3cr\u00e9t\n",
        "PULP_ENVVAR_HEADER_CONTENT_GUARD_ALLOWED_VARS": f'["{SECRET_VAR}"]'})
    yield running
    stop_server(running)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TestEnvVarHeaderGuard:
    """pulpcore's EnvVarHeaderContentGuard: the Base64 header must match the content app
    process's environment variable, which ENVVAR_HEADER_CONTENT_GUARD_ALLOWED_VARS names
    (pulpcore's test_envvar_header_contentguard_workflow, with a file to serve)."""

    @pytest.mark.parametrize(("headers", "status", "body"), [
        ({SECRET_HEADER: _b64("s3cr\u00e9t")}, 200, FILE),
        ({}, 403, f"403: Access not allowed. Header {SECRET_HEADER} not found.".encode()),
        ({SECRET_HEADER: _b64("wrong-secret")}, 403, b"403: Access denied."),
        ({SECRET_HEADER: _b64("s3cr\u00e9t\n")}, 403, b"403: Access denied."),
        ({SECRET_HEADER: "not base64!"}, 403,
         b"403: Access not allowed - Header content is not Base64 encoded."),
    ])
    def test_the_header_must_match_the_environment(self, envvar_server, unique, headers,
                                                   status, body):
        guard = EnvVarHeaderContentGuard.objects.create(
            name=f"env-{unique}", header_name=SECRET_HEADER, env_var=SECRET_VAR)
        response = get(envvar_server, guarded(unique, guard), headers=headers)
        assert (response.status_code, response.content) == (status, body)

    def test_a_variable_not_allowed_is_never_read(self, envvar_server, unique):
        """HOME is set in the server's environment, but not allowed: denied even with its
        value."""
        guard = EnvVarHeaderContentGuard.objects.create(
            name=f"env-home-{unique}", header_name=SECRET_HEADER, env_var="HOME")
        response = get(envvar_server, guarded(unique, guard),
                       headers={SECRET_HEADER: _b64(os.environ["HOME"])})
        assert (response.status_code, response.text) == (403, "403: Access denied.")

    def test_without_the_variable_access_is_denied(self, server, unique):
        """The default server has no such variable (nor allows it): denied."""
        guard = EnvVarHeaderContentGuard.objects.create(
            name=f"env-none-{unique}", header_name=SECRET_HEADER, env_var=SECRET_VAR)
        response = get(server, guarded(unique, guard),
                       headers={SECRET_HEADER: _b64("s3cr\u00e9t")})
        assert (response.status_code, response.text) == (403, "403: Access denied.")


class TestRedirectGuard:
    def test_signed_url(self, server, unique):
        guard = ContentRedirectContentGuard.objects.create(name=f"redir-{unique}")
        distribution = guarded(unique, guard)
        plain = server.url(f"/pulp/content/{distribution.base_path}/file.txt")
        signed = guard.preauthenticate_url(plain)
        response = httpx.get(signed)
        assert response.status_code == 200 and response.content == FILE
        assert httpx.get(plain).status_code == 403
        tampered = signed.replace("file.txt", "other.txt")
        assert httpx.get(tampered).status_code == 403
        expired = httpx.get(plain + "?expires=1&validate_token=00:00")
        assert expired.status_code == 403
        assert "Authentication expired" in expired.text


class TestCompositeGuard:
    def test_any_member_allows_and_refusals_are_listed(self, server, unique):
        redirect = ContentRedirectContentGuard.objects.create(name=f"c-redir-{unique}")
        header = HeaderContentGuard.objects.create(name=f"c-hdr-{unique}", header_name="x-key",
                                                   header_value="k")
        guard = CompositeContentGuard.objects.create(name=f"comp-{unique}")
        guard.guards.set([redirect, header])
        distribution = guarded(unique, guard)
        denied = get(server, distribution)
        assert denied.status_code == 403
        assert f"c-redir-{unique}" in denied.text and f"c-hdr-{unique}" in denied.text
        assert str(redirect.pk) in denied.text and str(header.pk) in denied.text
        key = base64.b64encode(b"k").decode()
        assert get(server, distribution, headers={"X-Key": key}).status_code == 200

    def test_empty_composite_allows(self, server, unique):
        guard = CompositeContentGuard.objects.create(name=f"empty-{unique}")
        assert get(server, guarded(unique, guard)).status_code == 200


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(subject: str, issuer_key, issuer: str, key, *, ca: bool = False,
                 days: int = 30, padding: int = 0) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if padding:
        # Stands in for the large keys of post-quantum certificates (> 8 KiB headers).
        names = [x509.DNSName(f"{i:06d}.padding.example") for i in range(padding)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki():
    ca_key, rogue_key, client_key = (ec.generate_private_key(ec.SECP256R1())
                                     for _ in range(3))
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    return {
        "ca": ca,
        "client": _certificate("client", ca_key, "Test CA", client_key),
        "big": _certificate("big client", ca_key, "Test CA", client_key, padding=400),
        "expired": _certificate("old", ca_key, "Test CA", client_key, days=-1),
        "untrusted": _certificate("rogue", rogue_key, "Rogue CA", client_key),
    }



class TestX509CertGuard:
    @pytest.fixture
    def distribution(self, pki, unique):
        guard = X509CertGuard.objects.create(name=f"x509-{unique}",
                                             ca_certificate=_pem(pki["ca"]))
        return guarded(unique, guard)

    def test_trusted_certificate_is_served(self, any_server, pki, distribution):
        header = {"X-CLIENT-CERT": quote(_pem(pki["client"]))}
        assert get(any_server, distribution, headers=header).status_code == 200
        listing = get(any_server, distribution, path="", headers=header)
        assert listing.status_code == 200 and "file.txt" in listing.text

    def test_unencoded_certificate_is_accepted(self, server, pki, distribution):
        unencoded = _pem(pki["client"]).strip().replace("\n", " ")
        assert get(server, distribution, headers={"X-CLIENT-CERT": unencoded}).status_code == 200

    def test_certificate_header_over_8_kib(self, any_server, pki, distribution):
        header = quote(_pem(pki["big"]))
        assert len(header) > 10 * 1024
        response = get(any_server, distribution, headers={"X-CLIENT-CERT": header})
        assert response.status_code == 200

    @pytest.mark.parametrize("case", ["untrusted", "expired", "missing", "empty", "garbage"])
    def test_refused(self, server, pki, distribution, case):
        value = {"untrusted": quote(_pem(pki["untrusted"])) if case == "untrusted" else None,
                 "expired": quote(_pem(pki["expired"])) if case == "expired" else None,
                 "missing": None, "empty": "", "garbage": "not a certificate"}[case]
        headers = {} if value is None else {"X-CLIENT-CERT": value}
        response = get(server, distribution, headers=headers)
        assert response.status_code == 403
        assert len(response.text) > len("403: ")


RHSM = os.path.join(os.path.dirname(__import__("pulp_certguard").__file__), "tests",
                    "functional", "artifacts", "rhsm")


class TestRHSMCertGuard:
    @pytest.fixture
    def guard(self, unique):
        with open(os.path.join(RHSM, "katello-default-ca.crt")) as ca:
            return RHSMCertGuard.objects.create(name=f"rhsm-{unique}", ca_certificate=ca.read())

    def _cert(self, name):
        with open(os.path.join(RHSM, name)) as cert:
            return {"X-CLIENT-CERT": quote(cert.read())}

    def test_entitled_path_is_served(self, server, guard, unique):
        distribution = guarded(unique, guard, "Default_Organization/Library/custom/foo/foo")
        response = get(server, distribution, headers=self._cert("v3/4260035510644027985.pem"))
        assert response.status_code == 200

    def test_variable_path_is_served(self, server, guard, unique):
        base = "Default_Organization/Library/content/dist/rhel8/8/x86_64/baseos/os"
        distribution = guarded(unique, guard, base)
        response = get(server, distribution, headers=self._cert("v3/5527980418107729172.pem"))
        assert response.status_code == 200

    @pytest.mark.parametrize("cert", ["untrusted_cert.pem", "trusted_but_expired.pem",
                                      "v3/5527980418107729172.pem"])
    def test_refused(self, server, guard, unique, cert):
        distribution = guarded(unique, guard, "Default_Organization/Library/custom/foo/foo")
        assert get(server, distribution, headers=self._cert(cert)).status_code == 403


def test_hidden_and_artifact_distributions_are_not_listed(server, unique):
    repo = data.repository(f"hidden-{unique}", {"f": b"f"})
    publication = data.publish(repo.latest_version())
    data.distribute(f"hidden-{unique}", publication=publication, hidden=True)
    data.distribute(f"shown-{unique}", publication=publication)
    page = httpx.get(server.url("/pulp/content/")).text
    assert f"shown-{unique}/" in page
    assert f"hidden-{unique}/" not in page
    from pulpcore.app.models import ArtifactDistribution

    # pulpcore's post_migrate creates it; the check must not silently stop running.
    artifact_base = ArtifactDistribution.objects.values_list("base_path", flat=True).get()
    assert f"{artifact_base.split('/')[0]}/" not in page
