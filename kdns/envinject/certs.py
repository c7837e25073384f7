"""A self-signed CA and a serving certificate for the webhook, for clusters without
cert-manager.

The API server verifies the webhook against the ``caBundle`` of the
MutatingWebhookConfiguration and the name ``<service>.<namespace>.svc``; this module
makes a pair that passes both, and the caBundle to paste. ECDSA P-256 keeps generation
instant and handshakes cheap; the API server's Go client accepts it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What deploy/components/webhook-server names: the Service both webhook configurations call,
# and the TLS Secret the Deployment mounts at /etc/kdns/tls. Kept equal to deploy/ by
# tests/test_envinject_certs_deploy.py.
DEFAULT_SERVICE = "kdns-webhook"
DEFAULT_NAMESPACE = "kube-system"
DEFAULT_SECRET = "kdns-webhook-tls"
# The MutatingWebhookConfigurations that call it (envinject, and clusterip's overlay).
WEBHOOK_CONFIGURATIONS = ("kdns-envinject", "kdns-clusterip")


@dataclass(frozen=True, slots=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Issued:
    ca: Pair
    serving: Pair

    @property
    def ca_bundle(self) -> str:
        """What ``clientConfig.caBundle`` wants: the CA certificate PEM, base64."""
        return base64.b64encode(self.ca.cert_pem).decode("ascii")


def service_names(service: str, namespace: str, zone: str = "cluster.local") -> tuple[str, ...]:
    """Every name the API server may dial the webhook Service by."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{zone}",
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    # Back-dated a little so a node with a slow clock accepts a fresh certificate.
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def make_ca(common_name: str = "kdns envinject CA", days: int = 3650) -> Pair:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def issue(
    ca: Pair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    days: int = 365,
) -> Pair:
    """A serving certificate for ``dns_names`` and ``ip_addresses`` signed by ``ca``."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = _key()
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    start, end = _validity(days)
    subject = dns_names[0] if dns_names else ip_addresses[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def generate(
    service: str,
    namespace: str,
    ip_addresses: Sequence[str] = (),
    zone: str = "cluster.local",
    days: int = 365,
) -> Issued:
    """A new CA and a serving pair for the webhook Service ``namespace/service``."""
    ca = make_ca()
    return Issued(ca, issue(ca, service_names(service, namespace, zone), ip_addresses, days))


def write(issued: Issued, directory: str | Path) -> tuple[Path, Path, Path]:
    """Write ``tls.crt``, ``tls.key`` (mode 0600) and ``ca.crt``, as a TLS Secret names
    them, so the same paths work for a mounted Secret and for these files."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cert, key, ca = out / "tls.crt", out / "tls.key", out / "ca.crt"
    key.touch(mode=0o600)
    key.write_bytes(issued.serving.key_pem)
    cert.write_bytes(issued.serving.cert_pem)
    ca.write_bytes(issued.ca.cert_pem)
    return cert, key, ca


def kubectl_commands(
    issued: Issued,
    cert: str | Path,
    key: str | Path,
    namespace: str = DEFAULT_NAMESPACE,
    secret: str = DEFAULT_SECRET,
    configurations: Sequence[str] = WEBHOOK_CONFIGURATIONS,
) -> list[str]:
    """The shell commands that install a written pair without cert-manager: the TLS Secret
    the Deployment mounts (re-runnable: create piped to a server-side apply), then the
    caBundle of each webhook configuration (one webhook each; a configuration that is not
    deployed fails alone)."""
    q = shlex.quote
    commands = [
        f"kubectl -n {q(namespace)} create secret tls {q(secret)}"
        f" --cert={q(str(cert))} --key={q(str(key))} --dry-run=client -o yaml"
        " | kubectl apply --server-side -f -"
    ]
    patch = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": issued.ca_bundle}]
    for name in configurations:
        commands.append(
            f"kubectl patch mutatingwebhookconfiguration {q(name)} --type=json"
            f" -p {q(json.dumps(patch, separators=(',', ':')))}"
        )
    return commands
