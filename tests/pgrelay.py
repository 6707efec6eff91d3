"""A TCP relay between the app and PostgreSQL that can lose one commit's acknowledgement.

The relay forwards PostgreSQL's wire protocol (frontend/backend protocol 3.0, "Message
Flow" and "Message Formats" in PostgreSQL's documentation) message by message, so it
knows where each message begins. Armed with a marker (e.g. ``INSERT INTO
"core_artifact"``), it watches each connection's statements: on the first connection
whose transaction sent a statement holding the marker, the next ``COMMIT`` is forwarded
to PostgreSQL, PostgreSQL's whole reply (``CommandComplete``/``COMMIT`` up to
``ReadyForQuery``) is read and withheld, and then both sockets are closed. PostgreSQL
has committed; the client only sees its connection die. That is the lost
acknowledgement, made at an exact point instead of by timing a crash.

Encryption requests (``SSLRequest``, ``GSSENCRequest``) are answered ``N`` by the relay
itself, so every byte it forwards is plain protocol. ``refusing`` makes it close new
connections at once (PostgreSQL unreachable for the client, reachable for the test).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

from pulp_content_asgi.devtools.processes import free_port

#: Request codes of the untyped messages a client may send before its StartupMessage.
_ENCRYPTION_REQUESTS = (80877103, 80877104)  # SSLRequest, GSSENCRequest
#: Frontend messages that carry SQL text: simple Query and Parse.
_SQL_MESSAGES = (b"Q", b"P")


def _exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; raises EOFError when it closes first."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _typed(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed message: (type byte, the whole message as sent)."""
    head = _exactly(sock, 5)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], head + _exactly(sock, length - 4)


def _sql(message: bytes) -> bytes:
    """The SQL text of a Query or Parse message (Parse: after the statement's name)."""
    body = message[5:]
    if message[:1] == b"P":
        body = body[body.index(b"\0") + 1:]
    return body.split(b"\0", 1)[0]


@dataclass(eq=False)  # kept in a set by identity
class _Connection:
    client: socket.socket
    server: socket.socket
    marked: bool = False  # this transaction sent a statement holding the marker
    withholding: bool = False  # its COMMIT went to PostgreSQL: replies are kept back
    withheld: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class PgRelay:
    """Listens on ``port`` (loopback) and relays to PostgreSQL on ``target_port``.

    ``arm(marker)`` prepares one lost acknowledgement; :attr:`lost` is set once PostgreSQL
    answered that ``COMMIT`` and the connection was closed, :attr:`reply` holding the
    messages withheld. ``then_refuse`` (argument of ``arm``) makes the relay refuse new
    connections from that moment until :meth:`accept` is called.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = False
        self.lost = threading.Event()
        self.reply: list[bytes] = []
        self.connections = 0  # accepted and relayed, for the test's assertions
        self._marker: bytes | None = None
        self._then_refuse = False
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._open: set[_Connection] = set()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True, name="pgrelay").start()

    def arm(self, marker: bytes, then_refuse: bool = False) -> None:
        with self._lock:
            self._marker = marker
            self._then_refuse = then_refuse

    def accept(self) -> None:
        """Relay new connections again (after ``then_refuse``)."""
        self.refusing = False

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        for conn in list(self._open):
            conn.close()

    # --- the relay's threads ------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            conn = _Connection(client, server)
            self._open.add(conn)
            self.connections += 1
            threading.Thread(target=self._frontend, args=(conn,), daemon=True).start()
            threading.Thread(target=self._backend, args=(conn,), daemon=True).start()

    def _frontend(self, conn: _Connection) -> None:
        """Client → PostgreSQL: the untyped start-up messages, then typed ones."""
        try:
            while True:
                head = _exactly(conn.client, 8)
                length, code = struct.unpack("!II", head)
                if code not in _ENCRYPTION_REQUESTS:
                    conn.server.sendall(head + _exactly(conn.client, length - 8))
                    break
                conn.client.sendall(b"N")  # no encryption: the stream stays readable
            while True:
                kind, message = _typed(conn.client)
                if kind in _SQL_MESSAGES:
                    self._inspect(conn, _sql(message))
                conn.server.sendall(message)
        except (EOFError, OSError):
            conn.close()
            self._open.discard(conn)

    def _inspect(self, conn: _Connection, statement: bytes) -> None:
        """Mark the transaction that sent the marker; withhold its COMMIT's reply."""
        with self._lock:
            if self._marker is None:
                return
            if self._marker in statement:
                conn.marked = True
            elif conn.marked and statement.strip().upper().startswith(b"COMMIT"):
                conn.withholding = True  # before PostgreSQL can answer it
                self._marker = None  # once
                if self._then_refuse:
                    self.refusing = True
            elif statement.strip().upper() == b"ROLLBACK":  # not "ROLLBACK TO SAVEPOINT"
                conn.marked = False

    def _backend(self, conn: _Connection) -> None:
        """PostgreSQL → client, every message typed (encryption was refused above)."""
        try:
            while True:
                kind, message = _typed(conn.server)
                if not conn.withholding:
                    conn.client.sendall(message)
                    continue
                conn.withheld.append(message)
                if kind == b"Z":  # ReadyForQuery: PostgreSQL is done with the COMMIT
                    self.reply = conn.withheld
                    conn.close()
                    self._open.discard(conn)
                    self.lost.set()
                    return
        except (EOFError, OSError):
            conn.close()
            self._open.discard(conn)

    def committed(self) -> bool:
        """Whether the withheld reply says PostgreSQL committed (``CommandComplete``
        with the tag ``COMMIT``, not ``ROLLBACK``)."""
        return any(m[:1] == b"C" and m[5:].rstrip(b"\0") == b"COMMIT" for m in self.reply)
