"""A cluster's certificates, as kubeadm lays them out: one CA, the API server's serving
pair, and client pairs (``clientAuth``) for the users it trusts.

Client-certificate authentication is how kubeadm's own components (and CoreDNS's
``tls CERT KEY CACERT``) prove who they are, so the emulator can require it: a request
without a certificate the cluster CA signed gets kube-apiserver's 401, and a
certificate from another CA fails the TLS handshake, as Go's VerifyClientCertIfGiven does.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kdns.envinject import certs


@dataclass(frozen=True, slots=True)
class ClientFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ClusterPKI:
    """Paths of a written PKI; ``ca`` is the CA certificate (``ca.crt``)."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    authority: certs.Pair

    def client(self, name: str = "kdns") -> ClientFiles:
        """A client pair for user ``name``, signed by this cluster's CA."""
        return write_client(self.directory, self.authority, name)

    def server_context(self) -> ssl.SSLContext:
        """The API server's side: its serving pair, client certificates checked if given."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.load_verify_locations(self.ca)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def write_cluster_pki(directory: Path, host: str = "127.0.0.1") -> ClusterPKI:
    """A new CA and a serving pair for ``host`` (plus kubernetes.default.svc) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = certs.make_ca("test cluster CA")
    serving = certs.issue(authority, ["kubernetes.default.svc", "localhost"], [host])
    ca, cert, key = directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key"
    ca.write_bytes(authority.cert_pem)
    cert.write_bytes(serving.cert_pem)
    key.write_bytes(serving.key_pem)
    return ClusterPKI(directory, ca, cert, key, authority)


def write_client(directory: Path, authority: certs.Pair, name: str) -> ClientFiles:
    """``<name>.crt`` and ``<name>.key``: a client certificate with CN ``name``."""
    ca_cert = x509.load_pem_x509_certificate(authority.cert_pem)
    ca_key = serialization.load_pem_private_key(authority.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = ClientFiles(directory / f"{name}.crt", directory / f"{name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
