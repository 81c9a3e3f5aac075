"""TLS and mutual TLS: the server's credentials, its ``ssl.SSLContext``, and the reload of
certificate files that change.

Wrapping each accepted connection is :mod:`gmf.rpc.accept`'s (asyncio's ``SSLProtocol``);
what the peer certificate says, for ``context.auth_context()``, is :mod:`gmf.rpc.peer`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("gmf")

ALPN = ["h2"]  # gRPC is HTTP/2 only (RFC 9113 3.2: "h2" over TLS)
ALPN_WEB = ["h2", "http/1.1"]  # with gRPC-Web and Connect: h2 first (the server's choice wins)


@dataclass(frozen=True)
class ServerCredentials:
    """What :func:`ssl_server_credentials` returns: PEM certificate chain and key, and for
    mutual TLS the PEM root certificates that client certificates must chain to.

    ``require_client_auth``: a client must present a certificate that verifies against
    ``root_certificates`` (mutual TLS). Without it no client certificate is asked for, even
    when root certificates are given: grpcio's behaviour.
    """

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)  # never in a log line or a traceback
    root_certificates: bytes | None = field(default=None, repr=False)
    require_client_auth: bool = False
    private_key_password: bytes | None = field(default=None, repr=False)  # for an encrypted key
    # Set by from_files: workers reload changed files every reload_interval seconds.
    files: tuple[str, str, str | None] | None = field(default=None, compare=False)
    reload_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.require_client_auth and not self.root_certificates:
            raise ValueError("require_client_auth needs root_certificates to verify client certificates against")

    @classmethod
    def from_files(cls, certificate_chain: str | os.PathLike[str], private_key: str | os.PathLike[str],
                   root_certificates: str | os.PathLike[str] | None = None,
                   require_client_auth: bool | None = None,
                   private_key_password: bytes | None = None,
                   reload_interval: float = 60.0) -> ServerCredentials:
        """Read PEM files. ``require_client_auth`` defaults to True when a client CA is given.
        Every ``reload_interval`` seconds each worker checks the files and, when they changed
        and load, serves new connections with them (certificate rotation without a restart)."""
        roots = Path(root_certificates).read_bytes() if root_certificates else None
        return cls(
            certificate_chain=Path(certificate_chain).read_bytes(),
            private_key=Path(private_key).read_bytes(),
            root_certificates=roots,
            require_client_auth=roots is not None if require_client_auth is None else require_client_auth,
            private_key_password=private_key_password,
            files=(os.fspath(certificate_chain), os.fspath(private_key),
                   os.fspath(root_certificates) if root_certificates else None),
            reload_interval=reload_interval,
        )

    def reread(self) -> ServerCredentials:
        """The same credentials read again from their files."""
        assert self.files is not None
        chain, key, roots = self.files
        return ServerCredentials.from_files(chain, key, roots, self.require_client_auth, self.private_key_password,
                                            self.reload_interval)

    def _password(self) -> bytes:
        """Called by OpenSSL only for an encrypted key (else it would prompt on the terminal)."""
        if self.private_key_password is None:
            raise ValueError("the private key is encrypted: pass private_key_password")
        return self.private_key_password

    def ssl_context(self) -> ssl.SSLContext:
        """A server context: TLS 1.2+, ALPN h2, no renegotiation, client verification as asked.
        Raises ValueError with the reason when the PEM data does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 9.2
        ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION  # RFC 9113 9.2.1
        # ssl can load a certificate chain only from files: a private directory, gone at once.
        with tempfile.TemporaryDirectory(prefix="gmf-tls-") as tmp:
            cert, key = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
            for path, data in ((cert, self.certificate_chain), (key, self.private_key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                ctx.load_cert_chain(cert, key, password=self._password)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"cannot load the TLS certificate chain and private key: {exc}") from None
        if self.root_certificates:
            try:
                ctx.load_verify_locations(cadata=self.root_certificates.decode("ascii"))
            except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot load the TLS root certificates: {exc}") from None
            if self.require_client_auth:
                ctx.verify_mode = ssl.CERT_REQUIRED
        return prepare_context(ctx)


def ssl_server_credentials(private_key_certificate_chain_pairs: Sequence[tuple[bytes, bytes]],
                           root_certificates: bytes | None = None,
                           require_client_auth: bool = False) -> ServerCredentials:
    """``grpc.ssl_server_credentials`` with the same arguments, for ``add_secure_port`` or
    ``GmfServer(tls=...)``. One (key, chain) pair: serve several names from one certificate
    (subjectAltName), or pass an ``ssl.SSLContext`` with an ``sni_callback`` as ``tls``."""
    pairs = list(private_key_certificate_chain_pairs)
    if len(pairs) != 1:
        raise ValueError(f"expected exactly one (private_key, certificate_chain) pair, got {len(pairs)}")
    key, chain = pairs[0]
    return ServerCredentials(chain, key, root_certificates, require_client_auth)


def prepare_context(ctx: ssl.SSLContext, alpn: Sequence[str] = ALPN) -> ssl.SSLContext:
    """Check a user's server context and offer ALPN h2 on it (gRPC clients require h2), and
    http/1.1 after it when gRPC-Web and Connect are served (``ALPN_WEB``)."""
    if not isinstance(ctx, ssl.SSLContext):
        raise TypeError(f"tls must be gmf.ServerCredentials or ssl.SSLContext, not {type(ctx).__name__}")
    if ctx.protocol is ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError("tls: an ssl.SSLContext for a server is needed (ssl.PROTOCOL_TLS_SERVER)")
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class ServerTls:
    """A server's TLS: the context new connections get and, for credentials read from files,
    the reload of changed files (in each worker; open connections keep their context).

    Workers fork from one context and so share its session-ticket keys: a client resumes its
    session on any worker. A reloaded context has its own keys, per worker."""

    def __init__(self, tls: Any) -> None:
        """``tls``: what ``GmfServer(tls=...)`` takes. Raises TypeError/ValueError at once."""
        if type(tls).__module__.startswith("grpc"):
            raise TypeError("grpc.ssl_server_credentials() returns an opaque C-core object: "
                            "use gmf.ssl_server_credentials() with the same arguments")
        self.credentials = tls if isinstance(tls, ServerCredentials) else None
        self.context = tls.ssl_context() if self.credentials is not None else prepare_context(tls)
        self.alpn: Sequence[str] = ALPN
        self._stamp = self._file_stamp()

    def offer(self, alpn: Sequence[str]) -> None:
        """The ALPN protocols to offer (``ALPN``, or ``ALPN_WEB`` with gRPC-Web and Connect),
        on this context and every reloaded one."""
        self.alpn = alpn
        self.context.set_alpn_protocols(list(alpn))

    def _file_stamp(self) -> tuple[tuple[int, int, int], ...] | None:
        files = self.credentials.files if self.credentials is not None else None
        if not files:
            return None
        try:
            stats = [os.stat(path) for path in files if path]
        except OSError:
            return self._stamp  # mid-rotation (a file briefly missing): look again next time
        return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; a failure keeps the
        current context and is logged (a half-written rotation is retried next time)."""
        stamp = self._file_stamp()
        if stamp == self._stamp or self.credentials is None:
            return False
        self._stamp = stamp
        try:
            credentials = self.credentials.reread()
            context = credentials.ssl_context()
        except (OSError, ValueError) as exc:
            log.warning("TLS files changed but do not load (still serving the previous certificate): %s", exc)
            return False
        context.set_alpn_protocols(list(self.alpn))
        self.credentials, self.context = credentials, context
        log.info("TLS certificate reloaded from %s", credentials.files[0] if credentials.files else "?")
        return True

    def start_reloading(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a worker: check the credential files every ``reload_interval`` seconds (only
        when the credentials came from files)."""
        if self._stamp is None or self.credentials is None:
            return
        interval = self.credentials.reload_interval

        def check() -> None:
            self.reload_if_changed()
            loop.call_later(interval, check)

        loop.call_later(interval, check)
