"""A throwaway certificate authority for TLS tests (Mosquitto, the IoT Hub stand-in, HTTPS).

Made with the `openssl` command line, so no Python crypto package is needed. Keys are made
world-readable on purpose: Mosquitto started as root drops to the `mosquitto` user.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TestCA:
    __test__ = False  # a helper, not a test class pytest should collect

    folder: Path
    ca_file: Path
    ca_key: Path

    def server_cert(self, name: str, hosts: list[str]) -> ServerCert:
        """A certificate for `hosts` (DNS names or IP addresses) signed by this CA."""
        key = self.folder / f"{name}.key"
        csr = self.folder / f"{name}.csr"
        cert = self.folder / f"{name}.crt"
        ext = self.folder / f"{name}.ext"
        alt = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
        ext.write_text(
            f"subjectAltName={alt}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl(
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={hosts[0]}",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.ca_file,
            "-CAkey",
            self.ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-sha256",
            "-extfile",
            ext,
        )
        key.chmod(0o644)
        return ServerCert(cert, key)

    def client_cert(self, name: str) -> ServerCert:
        """A client certificate whose subject CN is `name` (for X.509 client authentication)."""
        return self.server_cert(name, [name])


def make_ca(folder: Path) -> TestCA:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca_key = folder / "ca.key"
    ca_file = folder / "ca.crt"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca_file,
        "-days",
        "2",
        "-subj",
        "/CN=edgekit test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    ca_key.chmod(0o644)
    return TestCA(folder, ca_file, ca_key)


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
