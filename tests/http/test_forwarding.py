"""The gateway's header rules (protocol/forwarding.py), table-driven, no server."""

from __future__ import annotations

import pytest

from pulp_content_asgi.protocol import forwarding
from tests.helpers import scope


def forwarded(headers: dict[str, str], **changes) -> dict[str, str]:
    request = {**scope("/x", headers=headers), **changes}
    sent = forwarding.request_headers(request)
    names = [n for n, _ in sent]
    assert len(names) == len(set(names)), sent  # one field per name, lists joined
    return {n.decode(): v.decode() for n, v in sent}


def test_hop_by_hop_fields_and_the_ones_connection_names_are_dropped():
    sent = forwarded({"Connection": "keep-alive, X-Private", "X-Private": "1",
                      "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
                      "Proxy-Connection": "keep-alive", "Proxy-Authorization": "Basic eA==",
                      "Transfer-Encoding": "chunked", "Trailer": "Expires",
                      "X-Kept": "yes", "Authorization": "Bearer t"})
    assert set(sent) == {"x-kept", "authorization", "via", "x-forwarded-for",
                         "x-forwarded-proto", "x-forwarded-host", "host"}
    assert sent["authorization"] == "Bearer t"


@pytest.mark.parametrize(("given", "expected"), [
    ({}, {"via": "1.1 pulp-content-asgi", "x-forwarded-for": "127.0.0.1",
          "x-forwarded-proto": "http", "x-forwarded-host": "127.0.0.1:24816",
          "host": "127.0.0.1:24816"}),
    ({"Host": "pulp.example.com"}, {"host": "pulp.example.com",
                                    "x-forwarded-host": "pulp.example.com"}),
    ({"X-Forwarded-For": "203.0.113.7, 10.0.0.2"},
     {"x-forwarded-for": "203.0.113.7, 10.0.0.2, 127.0.0.1"}),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cdn.example.com"},
     {"x-forwarded-proto": "https", "x-forwarded-host": "cdn.example.com"}),
    ({"Via": "1.1 cdn"}, {"via": "1.1 cdn, 1.1 pulp-content-asgi"}),
])
def test_forwarding_fields_are_added_or_extended(given, expected):
    sent = forwarded(given)
    assert {k: sent[k] for k in expected} == expected


def test_repeated_list_fields_are_joined_then_extended():
    request = scope("/x")
    request["headers"] = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"),
                          (b"via", b"1.0 a"), (b"via", b"1.1 b")]
    sent = dict(forwarding.request_headers(request))
    assert sent[b"x-forwarded-for"] == b"1.1.1.1, 2.2.2.2, 127.0.0.1"
    assert sent[b"via"] == b"1.0 a, 1.1 b, 1.1 pulp-content-asgi"


@pytest.mark.parametrize(("version", "via"), [("1.0", "1.0"), ("1", "1.0"), ("1.1", "1.1"),
                                              ("2", "2")])
def test_via_names_the_protocol_the_client_spoke(version, via):
    assert forwarded({}, http_version=version)["via"] == f"{via} pulp-content-asgi"


def test_a_request_without_a_client_address_adds_none():
    sent = forwarded({}, client=None, scheme="https")
    assert "x-forwarded-for" not in sent and sent["x-forwarded-proto"] == "https"


def test_response_headers_keep_order_and_repeats_less_hop_by_hop_and_date():
    raw = [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a=1"),
           (b"Date", b"Sun, 29 Nov 2026 12:58:25 GMT"),
           (b"Connection", b"keep-alive, X-Conn"), (b"X-Conn", b"x"),
           (b"Transfer-Encoding", b"chunked"), (b"Set-Cookie", b"b=2"), (b"ETag", b'"e"')]
    assert forwarding.response_headers(raw) == [
        (b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
        (b"etag", b'"e"')]


@pytest.mark.parametrize(("headers", "body"), [
    ([], False), ([(b"content-length", b"0")], False), ([(b"content-length", b"12")], True),
    ([(b"transfer-encoding", b"chunked")], True), ([(b"Content-Length", b"3")], True),
])
def test_has_body(headers, body):
    assert forwarding.has_body(headers) is body
