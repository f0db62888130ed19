"""The listeners of ``anpr serve``: a Unix socket for local users, TLS for remote ones.

Each connection gets a thread. The peer is identified once, when the connection is accepted
(:mod:`.peers`); a peer that cannot be identified gets nothing but a closed connection, and the
attempt goes to the activity log. Then requests are read and answered in turn until the client
closes (:mod:`.wire`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.config import ServeSettings
from pipeline.errors import UsageError
from pipeline.service.handlers import EXIT_USAGE, Service
from pipeline.service.peers import (
    Peer,
    Unauthenticated,
    server_tls_context,
    tls_peer,
    unix_peer,
)
from pipeline.service.wire import Reply, WireError, read_frame, stream_of, write_reply

logger = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT_S = 10.0
# Everyone may connect to the socket: the kernel tells us who they are, and the service's
# [access] users decides what they get (nothing, for a user without a role).
_SOCKET_MODE = 0o666


def _split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Server:
    """Bind with :meth:`bind`, then :meth:`serve` until :meth:`stop` (any thread, signals)."""

    def __init__(self, service: Service, settings: ServeSettings) -> None:
        self.service = service
        self.settings = settings
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._unix: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._tls: ssl.SSLContext | None = None
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """Where TLS clients connect (the real port if ``tls_listen`` asked for port 0)."""
        if self._tcp is None:
            return None
        host, port = self._tcp.getsockname()[:2]
        return str(host), int(port)

    def bind(self) -> None:
        self._unix = _bind_unix(self.settings.socket)
        self._selector.register(self._unix, selectors.EVENT_READ, self._accept_unix)
        if self.settings.tls_listen:
            serve = self.settings
            if serve.tls_cert is None or serve.tls_key is None or serve.tls_client_ca is None:
                raise UsageError("serve.tls_listen needs tls_cert, tls_key and tls_client_ca")
            try:
                self._tls = server_tls_context(
                    str(serve.tls_cert), str(serve.tls_key), str(serve.tls_client_ca)
                )
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot load the service's TLS files: {exc}") from None
            host, port = _split_address(serve.tls_listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._tcp = socket.socket(family, socket.SOCK_STREAM)
            self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._tcp.bind((host, port))
            self._tcp.listen(64)
            self._selector.register(self._tcp, selectors.EVENT_READ, self._accept_tls)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def serve(self) -> None:
        """Accept until :meth:`stop`; then close the listeners and wait for open requests."""
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select():
                    accept: Callable[[socket.socket], None] | None = key.data
                    if accept is not None and not self._stopping.is_set():
                        accept(key.fileobj)  # type: ignore[arg-type]
        finally:
            self._close_listeners()
            with self._lock:
                threads = list(self._threads)
            for thread in threads:
                thread.join(timeout=30)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _close_listeners(self) -> None:
        for sock in (self._unix, self._tcp):
            if sock is not None:
                sock.close()
        if self._unix is not None:
            with contextlib.suppress(FileNotFoundError):
                self.settings.socket.unlink()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _start(self, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _accept_unix(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        self._start(lambda: self._unix_connection(conn))

    def _accept_tls(self, listener: socket.socket) -> None:
        conn, address = listener.accept()
        self._start(lambda: self._tls_connection(conn, f"{address[0]}:{address[1]}"))

    def _unix_connection(self, conn: socket.socket) -> None:
        with conn:
            try:
                peer = unix_peer(conn)
            except Unauthenticated as exc:
                self.service.refuse_peer("unix", "local", exc.why)
                return
            self._exchange(conn, peer)

    def _tls_connection(self, conn: socket.socket, address: str) -> None:
        assert self._tls is not None
        conn.settimeout(_HANDSHAKE_TIMEOUT_S)
        try:
            tls = self._tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            conn.close()
            self.service.refuse_peer("tls", address, _handshake_problem(exc))
            return
        with tls:
            try:
                peer = tls_peer(tls, address)
            except Unauthenticated as exc:
                self.service.refuse_peer("tls", address, exc.why)
                return
            tls.settimeout(None)
            self._exchange(tls, peer)

    def _exchange(self, sock: socket.socket, peer: Peer) -> None:
        stream = stream_of(sock)
        try:
            while not self._stopping.is_set():
                try:
                    message = read_frame(stream, self.settings.max_request_bytes)
                except WireError as exc:
                    write_reply(stream, Reply(EXIT_USAGE, error=f"bad request: {exc}"))
                    return
                if message is None:
                    return
                write_reply(stream, self.service.handle(peer, message))
        except (BrokenPipeError, ConnectionResetError):
            logger.info("a client of %s went away mid-reply", peer.user)
        finally:
            with contextlib.suppress(OSError):
                stream.close()


def _handshake_problem(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.__class__.__name__
        return f"TLS handshake failed: {reason}"
    return f"TLS handshake failed: {type(exc).__name__}"


def _bind_unix(path: Path) -> socket.socket:
    """Bind the socket (replacing a stale one, never a live one or another kind of file)."""
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: left behind by a killed service
        else:
            raise UsageError(f"a query service is already listening on {path}")
        finally:
            probe.close()
    elif path.exists() or path.is_symlink():
        raise UsageError(f"{path} exists and is not a socket: remove it or set serve.socket")
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True)
        # Clients must reach the socket; our umask (077) would have shut them out.
        folder.chmod(0o755)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, _SOCKET_MODE)
        listener.listen(64)
    except OSError as exc:
        listener.close()
        raise UsageError(f"cannot listen on {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(path.lstat().st_mode):  # pragma: no cover - a race with another process
        raise UsageError(f"{path} was replaced while binding")
    return listener
