"""The run's CA, server certificate and SuperNode keys: valid, private, and usable for real TLS."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fedcomp.engines.deployment.credentials import create_credentials


def test_files_are_owner_only(tmp_path: Path) -> None:
    creds = create_credentials(tmp_path / "c", "127.0.0.1", 2)
    assert stat.S_IMODE(creds.directory.stat().st_mode) == 0o700
    names = {p.name for p in creds.files()}
    assert names == {"ca.pem", "server.pem", "server.key", "supernode-0.key", "supernode-0.pub",
                     "supernode-1.key", "supernode-1.pub"}  # fmt: skip
    assert {stat.S_IMODE(p.stat().st_mode) for p in creds.files()} == {0o600}
    with pytest.raises(FileExistsError):  # never reuses (or loosens) an existing directory
        create_credentials(creds.directory, "127.0.0.1", 1)


def test_server_certificate_is_signed_by_the_ca_for_the_host(tmp_path: Path) -> None:
    creds = create_credentials(tmp_path / "c", "10.1.2.3", 0)
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(creds.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3"),
    }  # fmt: skip
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert creds.node_keys == ()


def test_supernode_keys_are_openssh_nist_pairs(tmp_path: Path) -> None:
    creds = create_credentials(tmp_path / "c", "127.0.0.1", 3)
    publics = set()
    for private_path, public_path in creds.node_keys:
        private = load_ssh_private_key(private_path.read_bytes(), None)
        public = load_ssh_public_key(public_path.read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
        assert private.public_key().public_numbers() == public.public_numbers()
        publics.add(public_path.read_bytes())
    assert len(publics) == 3  # one key pair per SuperNode


def test_tls_handshake_trusts_only_the_run_ca(tmp_path: Path) -> None:
    """A real TLS server with the run's certificate: a client trusting the CA connects, others do not."""
    creds = create_credentials(tmp_path / "c", "127.0.0.1", 0)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(creds.server_cert, creds.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    try:
        trusting = ssl.create_default_context(cafile=str(creds.ca_cert))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(5) == b"hello"
        untrusting = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", port)) as raw:
            untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        thread.join(timeout=10)
        listener.close()
