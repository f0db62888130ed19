"""Who is on the other end of a connection, from what the caller cannot forge.

- Local socket: the kernel's record of the peer process's uid (``SO_PEERCRED``, taken at
  ``connect()``), mapped to a name through the password database. Not ``$USER``, not
  ``$LOGNAME``, nothing the client sends.
- TLS: the common name of a client certificate that the service's own CA signed (the TLS
  handshake with ``CERT_REQUIRED`` has already checked the signature and validity).
"""

from __future__ import annotations

import pwd
import re
import socket
import ssl
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


class Unauthenticated(Exception):
    """The peer could not be identified; ``why`` is safe to log."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class Peer:
    user: str
    via: str  # "unix" or "tls"
    detail: str  # uid=1001 pid=4242, or the TLS peer address: for the log, never for decisions


def unix_peer(sock: socket.socket) -> Peer:
    """The user running the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _gid = _UCRED.unpack(raw)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise Unauthenticated(f"uid {uid} is not in the password database") from None
    if not USER_NAME.fullmatch(name):
        raise Unauthenticated(f"uid {uid} has a user name that is not plain")
    return Peer(name, "unix", f"uid={uid} pid={pid}")


def tls_peer(sock: ssl.SSLSocket, address: str) -> Peer:
    """The user named by the client certificate's common name (the handshake verified it)."""
    cert = sock.getpeercert()
    if not cert:
        raise Unauthenticated("no client certificate")
    names = [
        str(pair[1])
        for rdn in cert.get("subject", ())
        for pair in rdn
        if isinstance(pair, tuple) and pair[0] == "commonName"
    ]
    if len(names) != 1 or not USER_NAME.fullmatch(names[0]):
        raise Unauthenticated("client certificate needs exactly one plain common name")
    return Peer(names[0], "tls", address)


def server_tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS 1.2+, our certificate, and client certificates required from ``client_ca`` only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls_context(cert: str, key: str, server_ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=server_ca)
    context.load_cert_chain(cert, key)
    return context
