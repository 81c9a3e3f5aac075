"""Proxy variables and the CA bundle, for builds and containers behind (TLS-intercepting) proxies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import ToolkitError

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY")
CA_ENV_VARS = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Where images made by the toolkit keep the extra CA bundle, and the combined one the
# Dockerfile points SSL_CERT_FILE / PIP_CERT / REQUESTS_CA_BUNDLE at.
IMAGE_EXTRA_CA = "/usr/local/share/gmf/ca-extra.crt"


def proxy_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Proxy variables set in the environment, in both spellings (tools differ on case)."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name in PROXY_VARS:
        value = env.get(name) or env.get(name.lower())
        if value:
            out[name] = value
            out[name.lower()] = value
    return out


def ca_bundle(explicit: str | None = None, environ: dict[str, str] | None = None) -> Path | None:
    """The CA bundle to trust inside images and containers.

    ``--ca-bundle`` wins; else SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE when
    set; else the system bundle if present; else None (public CAs only).
    """
    env = os.environ if environ is None else environ
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ToolkitError(f"--ca-bundle {explicit}: no such file; pass a PEM bundle of your proxy's CA")
        return path.resolve()
    for name in CA_ENV_VARS:
        value = env.get(name)
        if value and Path(value).is_file():
            return Path(value).resolve()
    return SYSTEM_BUNDLE if SYSTEM_BUNDLE.is_file() else None


def fingerprint(path: Path | None) -> str:
    """sha256 of the bundle's bytes ("none" without one): labels images with the CA they carry."""
    if path is None:
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()
