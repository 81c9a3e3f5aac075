"""Test certificates made by the real openssl CLI: a CA, a server certificate for
localhost/127.0.0.1, a client certificate from the same CA, and one from a rogue CA."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             cwd=cwd)


def issue(name: str, ca: str, san: str, usage: str, cwd: Path) -> None:
    """``name``.pem and ``name``.key in ``cwd``, signed by ``ca``."""
    (cwd / f"{name}.ext").write_text(  # valid under VERIFY_X509_STRICT (Python 3.13's default)
        f"subjectAltName={san}\nextendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/O=gmf/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=cwd)


def make_pki(directory: Path) -> Pki:
    _ca("ca", directory)
    _ca("rogue-ca", directory)
    issue("server", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth", directory)
    issue("client", "ca", "DNS:client.example,URI:spiffe://gmf/test-client", "clientAuth", directory)
    issue("rogue", "rogue-ca", "DNS:rogue.example", "clientAuth", directory)
    return Pki(directory)
