"""The webhook's key pair: generated certificates verify as the API server verifies
them, and a rotated pair is served from the next handshake on."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kdns.envinject import certs, tls


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_generated_pair_names_the_service() -> None:
    issued = certs.generate("kdns-envinject", "kube-system", ip_addresses=["127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(issued.serving.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "kdns-envinject",
        "kdns-envinject.kube-system",
        "kdns-envinject.kube-system.svc",
        "kdns-envinject.kube-system.svc.cluster.local",
    ]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ca = x509.load_pem_x509_certificate(issued.ca.cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)
    assert base64.b64decode(issued.ca_bundle) == issued.ca.cert_pem


def test_write_keeps_the_key_private(tmp_path: Path) -> None:
    cert, key, ca = certs.write(certs.generate("s", "ns"), tmp_path / "pair")
    assert (cert.name, key.name, ca.name) == ("tls.crt", "tls.key", "ca.crt")
    assert key.stat().st_mode & 0o077 == 0


def test_issue_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one"):
        certs.issue(certs.make_ca(), [])


async def served_cert(port: int, client: ssl.SSLContext, server_hostname: str | None) -> bytes:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname=server_hostname
    )
    obj = writer.get_extra_info("ssl_object")
    got: bytes = obj.getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return got


def write_pair(directory: Path, pair: certs.Pair) -> None:
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)


@pytest.mark.parametrize("server_hostname", [None, "kdns-envinject.kube-system.svc"])
def test_rotation_reaches_new_handshakes(tmp_path: Path, server_hostname: str | None) -> None:
    ca = certs.make_ca()
    names = certs.service_names("kdns-envinject", "kube-system")
    first, second, third = (certs.issue(ca, names, ["127.0.0.1"]) for _ in range(3))
    write_pair(tmp_path, first)
    reloading = tls.ReloadingContext(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cadata=ca.cert_pem.decode())
    if server_hostname is None:
        client.check_hostname = False  # an IP without SNI; the chain is still verified

    async def main() -> list[bytes]:
        server = await asyncio.start_server(
            lambda r, w: w.close(), "127.0.0.1", 0, ssl=reloading.context
        )
        port = server.sockets[0].getsockname()[1]
        seen = []
        async with server:
            seen.append(await served_cert(port, client, server_hostname))
            write_pair(tmp_path, second)
            seen.append(await served_cert(port, client, server_hostname))
            # Half-rotated: the new certificate is there, its key not yet. The last good
            # pair keeps serving, and the completed pair is picked up next.
            (tmp_path / "tls.crt").write_bytes(third.cert_pem)
            seen.append(await served_cert(port, client, server_hostname))
            (tmp_path / "tls.key").write_bytes(third.key_pem)
            seen.append(await served_cert(port, client, server_hostname))
        return seen

    seen = asyncio.run(main())
    assert seen == [der(p.cert_pem) for p in (first, second, second, third)]
    assert reloading.reloads == 2


def test_missing_files_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        tls.ReloadingContext(tmp_path / "tls.crt", tmp_path / "tls.key")


def test_vanished_files_keep_the_last_pair(tmp_path: Path) -> None:
    write_pair(tmp_path, certs.generate("s", "ns").serving)
    reloading = tls.ReloadingContext(tmp_path / "tls.crt", tmp_path / "tls.key")
    before = reloading.current
    (tmp_path / "tls.key").unlink()
    assert reloading.check() is False
    assert reloading.current is before
