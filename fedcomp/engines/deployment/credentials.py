"""The run's own secrets: a private CA, a loopback server certificate, SuperNode key pairs.

Created per deployment with the ``cryptography`` library (nothing downloaded) in a
directory of the run's temporary Flower home, and removed with it:

- ``ca.pem``: a private certificate authority, valid for one day. The SuperNodes and
  ``flwr`` trust it (``--root-certificates``, ``root-certificates``) and nothing else, so
  they talk only to a SuperLink holding a certificate it signed. Its private key signs
  the server certificate in memory and is never written.
- ``server.pem`` + ``server.key``: the SuperLink's certificate for the host it listens on
  (SAN: that IP or name, plus ``localhost`` and ``127.0.0.1``), signed by the CA
  (``--ssl-certfile``, ``--ssl-keyfile``, ``--ssl-ca-certfile``).
- ``supernode-<i>.key`` + ``supernode-<i>.pub``: one ECDSA P-384 key pair per SuperNode
  (OpenSSH format, what ``flower-supernode --auth-supernode-private-key`` and ``flwr
  supernode register`` read). A SuperLink started with ``--enable-supernode-auth`` admits
  only nodes whose public key was registered.

Every file is created with mode 0600 (owner only) from the start, never through the
project's 0644 result writer; the directory itself is 0700.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long the run's certificates are valid (a run that outlives it fails loudly).
VALIDITY = dt.timedelta(days=1)
PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class Credentials:
    """Paths of the files one deployment uses (all under :attr:`directory`)."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: tuple[tuple[Path, Path], ...]  # (private, public) per SuperNode, partition order

    def files(self) -> list[Path]:
        """Every file written, private keys included."""
        return sorted(p for p in self.directory.iterdir() if p.is_file())


def _write(path: Path, data: bytes, mode: int) -> Path:
    """Create ``path`` with ``mode`` from the start (no window with looser permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcomp"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _alt_names(host: str) -> list[x509.GeneralName]:
    """SAN entries for ``host``: an IP address or a DNS name, plus loopback."""
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        entry = x509.DNSName(host)
    return names if entry in names else [*names, entry]


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey, extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def create_credentials(directory: Path, host: str, num_nodes: int) -> Credentials:
    """Write a CA, a server certificate for ``host`` and ``num_nodes`` SuperNode key pairs.

    ``directory`` must not exist yet; it is created with mode 0700.
    """
    directory.mkdir(mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fedcomp run CA")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       encipher_only=False, decipher_only=False), True),
    ])  # fmt: skip
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(_name(host), ca_name, server_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName(_alt_names(host)), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ])  # fmt: skip
    pem = serialization.Encoding.PEM
    node_keys = []
    for i in range(num_nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        node_keys.append((
            _write(directory / f"supernode-{i}.key", private, PRIVATE_MODE),
            _write(directory / f"supernode-{i}.pub", public + b"\n", PRIVATE_MODE),
        ))  # fmt: skip
    return Credentials(
        directory=directory,
        ca_cert=_write(directory / "ca.pem", ca.public_bytes(pem), PRIVATE_MODE),
        server_cert=_write(directory / "server.pem", server.public_bytes(pem), PRIVATE_MODE),
        server_key=_write(directory / "server.key", _private_pem(server_key), PRIVATE_MODE),
        node_keys=tuple(node_keys),
    )
