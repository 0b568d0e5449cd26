"""A throwaway certificate authority for the local services: a CA, a server certificate for
127.0.0.1/localhost and optionally a client certificate, all as unencrypted PEM files.

Kafka reads them as PEM stores (`ssl.keystore.type=PEM`), librdkafka as `ssl.ca.location`,
`ssl.certificate.location` and `ssl.key.location`. Keys are EC P-256: fast to make, and both
Java's and OpenSSL's TLS 1.3 accept them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test session, short enough that a leaked file is worth nothing for long.
VALIDITY = timedelta(days=2)


@dataclass(frozen=True)
class KeyPair:
    """A certificate (with its chain up to, not including, the CA) and its private key, as PEM files."""

    cert_path: Path
    key_path: Path

    @property
    def keystore_pem(self) -> str:
        """Private key then certificate chain in one text: a Kafka PEM keystore file."""
        return self.key_path.read_text() + self.cert_path.read_text()


@dataclass(frozen=True)
class LocalCA:
    ca_path: Path
    server: KeyPair
    client: KeyPair | None


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tabletopic local"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"): what Kafka's PEM keystore reads without ssl.key.password.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def make_ca(directory: Path, client_name: str | None = None) -> LocalCA:
    """Write ca.pem, server.pem + server.key (SANs 127.0.0.1, ::1 and localhost) and, with
    `client_name`, client.pem + client.key (subject CN=client_name) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)  # a little slack for clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tabletopic local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = _write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return KeyPair(
            cert_path=_write(directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            key_path=_write(directory / f"{stem}.key", _key_pem(key)),
        )

    server = leaf("server", "localhost", ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    client = leaf("client", client_name, ExtendedKeyUsageOID.CLIENT_AUTH, []) if client_name else None
    return LocalCA(ca_path=ca_path, server=server, client=client)
