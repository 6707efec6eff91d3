"""An address in use is refused at start-up with one line (runners.ensure_free and the
uvicorn socket), unless the port is shared on purpose (SO_REUSEPORT)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pulp_content_asgi.server import runners


@pytest.fixture
def held() -> Iterator[int]:
    """A port listened on as granian's workers listen: SO_REUSEPORT."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_an_address_in_use_is_refused_with_one_line(held):
    with pytest.raises(runners.CannotListen) as raised:
        runners.ensure_free([runners.Address("127.0.0.1", held)])
    assert raised.value.code == (
        f"cannot listen on 127.0.0.1:{held}: address already in use (another server "
        "listens there: stop it, choose another --bind, or pass --reuse-port to share the "
        "port on purpose)")


def test_uvicorn_socket_refuses_it_too_unless_sharing(held):
    address = runners.Address("127.0.0.1", held)
    with pytest.raises(runners.CannotListen):
        runners._socket(address, reuse_port=False)
    runners._socket(address, reuse_port=True).close()  # joins on purpose


def test_a_free_address_passes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runners.ensure_free([runners.Address("127.0.0.1", port)])


def test_other_failures_name_the_reason():
    with pytest.raises(runners.CannotListen) as raised:
        runners.ensure_free([runners.Address("192.0.2.1", 24816)])  # not this host's
    assert raised.value.code == "cannot listen on 192.0.2.1:24816: cannot assign requested address"


@pytest.mark.parametrize(("value", "shown"), [
    ("127.0.0.1:24816", "127.0.0.1:24816"), ("[::1]:24816", "[::1]:24816"),
    (":24816", "0.0.0.0:24816")])
def test_addresses_are_shown_as_bound(value, shown):
    assert str(runners.parse_bind(value)) == shown
