"""Who is on the other end of a connection: its address as grpcio formats it, and grpcio's
``auth_context()`` (the peer certificate's identity) decoded once per TLS connection."""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Sequence
from typing import Any


def format_peer(peername: Any) -> str:
    """A socket address as grpcio's ``context.peer()`` shows it: ``ipv4:127.0.0.1:5000``."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return f"unix:{peername}" if peername else "unknown"


_RDN_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
              "stateOrProvinceName": "ST", "localityName": "L", "streetAddress": "STREET",
              "domainComponent": "DC", "userId": "UID"}


def _rfc2253(subject: Sequence[Any]) -> str:
    """Python's decoded subject (RDNs in certificate order) as OpenSSL's RFC 2253 string."""
    parts = []
    for rdn in reversed(subject):
        parts.append("+".join(f"{_RDN_SHORT.get(name, name)}={_escape_dn(value)}" for name, value in rdn))
    return ",".join(parts)


def _escape_dn(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


# Decoding the peer certificate costs ~14 us: once per connection, not per call.
_AUTH: weakref.WeakKeyDictionary[ssl.SSLObject, dict[str, list[bytes]]] = weakref.WeakKeyDictionary()


def auth_context(ssl_object: ssl.SSLObject | None) -> dict[str, list[bytes]]:
    """grpcio's ``ServicerContext.auth_context()`` for one connection: the same keys and
    values (except the SNI name and key exchange group, which Python's ssl does not expose)."""
    if ssl_object is None:
        return {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}
    auth = _AUTH.get(ssl_object)
    if auth is None:
        auth = _AUTH[ssl_object] = _decode_auth_context(ssl_object)
    return {key: list(values) for key, values in auth.items()}  # the caller's own copy


def _decode_auth_context(ssl_object: ssl.SSLObject) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
    der = ssl_object.getpeercert(binary_form=True)
    cert: dict[str, Any] = dict(ssl_object.getpeercert() or {}) if der else {}
    if der and cert:
        subject = cert.get("subject", ())
        out["x509_subject"] = [_rfc2253(subject).encode()]
        common_names = [value for rdn in subject for name, value in rdn if name == "commonName"]
        if common_names:
            out["x509_common_name"] = [common_names[-1].encode()]
        out["x509_pem_cert"] = [ssl.DER_cert_to_PEM_cert(der).encode()]
        sans = cert.get("subjectAltName", ())
        if sans:
            out["x509_subject_alternative_name"] = [value.encode() for _kind, value in sans]
        for kind, key in (("DNS", "peer_dns"), ("URI", "peer_uri"), ("email", "peer_email"), ("IP Address", "peer_ip")):
            values = [value.encode() for k, value in sans if k == kind]
            if values:
                out[key] = values
    out["security_level"] = [b"TSI_PRIVACY_AND_INTEGRITY"]
    out["ssl_session_reused"] = [b"true" if ssl_object.session_reused else b"false"]
    version = ssl_object.version()
    if version:
        out["ssl_tls_version"] = [version.encode()]
    uris = out.get("peer_uri", [])
    if len(uris) == 1 and uris[0].startswith(b"spiffe://"):
        out["peer_spiffe_id"] = uris
    return out


def peer_identity_key(auth: dict[str, list[bytes]]) -> str | None:
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        if key in auth:
            return key
    return None
