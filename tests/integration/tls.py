"""Certificates for the TLS test servers, and a proxy whose connections a
test can cut.

A private CA, made here, signs every server certificate, so a client that
trusts only that CA (never the system's store) verifies the servers; a
certificate for another name, signed by the same CA, shows that a client
checks the name and not only the signature.  Keys are EC P-256: fast to
make, and both Prosody (LuaSec) and ejabberd (fast_tls) serve them.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from component import CountingProxy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The name the test servers serve, and one they do not.
SERVER_NAME = "localhost"
WRONG_NAME = "wrong.example"
_VALIDITY = datetime.timedelta(days=30)
# Clocks of the machine and of the servers may differ by a little.
_BACKDATE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key, PEM: ``certificate`` holds the
    certificate alone, ``key`` its private key (PKCS #8, unencrypted; Prosody
    reads them apart) and ``combined`` both, certificate first (ejabberd's
    ``certfiles`` takes that).  ``names`` are its DNS names (SAN)."""

    certificate: Path
    key: Path
    combined: Path
    names: tuple[str, ...]


@dataclass(frozen=True)
class TlsCertificates:
    """The private CA and the certificates it signed.

    ``ca_file`` is a PEM file holding the CA certificate alone (the
    ``trust_roots`` of an account); ``ca_dir`` a directory holding only that
    file (Twisted's ``trustRoots`` takes a directory).  ``server`` is valid
    for ``localhost``; ``wrong_name`` for ``wrong.example`` only.
    """

    ca_file: Path
    ca_dir: Path
    server: TlsFiles
    wrong_name: TlsFiles


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """A self-signed CA that issues server certificates into ``directory``."""

    def __init__(self, directory: Path, name: str = "empc test CA") -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _subject(name)
        self._start = datetime.datetime.now(datetime.UTC) - _BACKDATE
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        self.certificate = (
            self._builder(self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_dir = directory / "ca"
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.ca_dir / "ca.pem"
        self.ca_file.write_bytes(_pem(self.certificate))

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        """A certificate this CA issues, valid from a day ago for 30 days."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._start)
            .not_valid_after(self._start + _VALIDITY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    def issue(self, names: Sequence[str], stem: str | None = None) -> TlsFiles:
        """A server certificate for the DNS ``names`` (the first is also its
        common name), written as ``<stem>.crt``, ``<stem>.key`` and
        ``<stem>.pem`` (both); ``stem`` defaults to the first name."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            self._builder(_subject(names[0]), key.public_key())
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        base = str(self.directory / (stem or names[0]))
        files = TlsFiles(
            Path(f"{base}.crt"), Path(f"{base}.key"), Path(f"{base}.pem"), tuple(names)
        )
        files.certificate.write_bytes(_pem(certificate))
        files.key.write_bytes(key_pem)
        files.combined.write_bytes(_pem(certificate) + key_pem)
        return files


def make_tls_certificates(directory: Path) -> TlsCertificates:
    """A new CA in ``directory``, and the certificates for ``localhost`` and
    for ``wrong.example`` it signed."""
    authority = CertificateAuthority(directory)
    return TlsCertificates(
        authority.ca_file,
        authority.ca_dir,
        authority.issue([SERVER_NAME]),
        authority.issue([WRONG_NAME]),
    )


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # struct linger: on, 0 s


class CuttableProxy(CountingProxy):
    """A CountingProxy whose current connections a test can cut, to lose
    the TCP connection without stopping the server."""

    def cut(self) -> int:
        """Close every connection now open through the proxy, both ends at
        once, and keep accepting new ones; return how many were cut.

        Each end sees the connection end without a closing ``</stream>``,
        as when the network fails.
        """
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: the close resets the connection, never waits on the peer.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(sockets) // 2
