"""A throwaway certificate authority for the local broker's TLS listeners, made with the openssl command line.

The CA issues the broker's server certificate (for 127.0.0.1) and one client certificate per Kafka user, CN = the
user's name, as Strimzi's User Operator does for a KafkaUser with `authentication: {type: tls}`. EC P-256 keys:
generating them takes milliseconds, so a fresh broker home gets fresh keys at no cost to start time. Keys are
unencrypted PKCS#8 PEM, which both the broker (ssl.keystore.type=PEM) and Python's ssl module read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "825"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def pem_bundle(self, ca: Path, into: Path) -> Path:
        """Key, certificate and CA in one PEM file: the broker's keystore (ssl.keystore.type=PEM)."""
        into.write_text(self.key.read_text() + self.cert.read_text() + ca.read_text())
        into.chmod(0o600)
        return into


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_ca(directory: Path, name: str = "tandem-devstack-ca") -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    ca = Issued(directory / "ca.crt", directory / "ca.key")
    _openssl(
        "req", "-x509", "-new", *_KEY, "-keyout", str(ca.key), "-out", str(ca.cert), "-days", DAYS,
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    ca.key.chmod(0o600)
    return ca


def issue(ca: Issued, directory: Path, name: str, *, server: bool = False) -> Issued:
    """A certificate for `name` signed by `ca`: a client certificate, or the broker's (valid for 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = Issued(directory / f"{name}.crt", directory / f"{name}.key")
    csr, extensions = directory / f"{name}.csr", directory / f"{name}.ext"
    usage = "serverAuth,clientAuth" if server else "clientAuth"
    lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
    if server:
        lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("req", "-new", *_KEY, "-keyout", str(leaf.key), "-out", str(csr), "-subj", f"/CN={name}")
    leaf.key.chmod(0o600)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-days", DAYS, "-out", str(leaf.cert), "-extfile", str(extensions),
    )  # fmt: skip
    csr.unlink()
    extensions.unlink()
    return leaf
