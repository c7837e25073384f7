"""Encrypted DNS end to end: DoT and DoH listeners, DoT and DoH upstreams, certificate rotation.

One real kdns process (``kdns -conf``) serves every block; its upstreams are a real
dnsmasq (plain) and a real unbound serving DNS over TLS with a certificate made here.
Clients are dnspython (``dns.query.tls``/``https``, HTTP/1.1 and HTTP/2) and dig
(``+tls``, ``+https``). Everything listens on 127.0.0.1. What ``kdns validate`` says of
such Corefiles is tested in process: tests/unit/plugins/test_tls.py.
"""

from __future__ import annotations

import datetime
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kdns.envinject import certs
from tests.support.process import KdnsCommand, free_port, http_get, wait_until
from tests.support.upstreams import (
    UNBOUND,
    UNBOUND_CONF,
    Dnsmasq,
    _Daemon,
    needs_dnsmasq,
    needs_unbound,
)

pytestmark = [needs_dnsmasq, needs_unbound, pytest.mark.timeout(120)]

NAME = "dns.example.test"  # the name in the certificates kdns and unbound serve
DIG = shutil.which("dig")


@dataclass
class Pki:
    dir: Path
    ca: certs.Pair

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"

    def issue(self) -> bytes:
        """A new serving pair for NAME and 127.0.0.1, written in place; its DER."""
        pair = certs.issue(self.ca, [NAME], ["127.0.0.1"])
        self.key.write_bytes(pair.key_pem)
        self.cert.write_bytes(pair.cert_pem)
        return ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def client_pair(pki: Pki) -> tuple[Path, Path]:
    """A client certificate (clientAuth) signed by the test CA, for mutual TLS."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert_pem)
    ca_key = serialization.load_pem_private_key(pki.ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kdns forwarder")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = pki.dir / "client.crt", pki.dir / "client.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory, certs.make_ca("kdns test CA"))
    pki.ca_file.write_bytes(pki.ca.cert_pem)
    pki.issue()
    return pki


class UnboundTls(_Daemon):
    """unbound serving the static example.net over plain DNS (readiness) and over TLS."""

    def __init__(self, workdir: Path, pki: Pki) -> None:
        self.port = free_port()
        self.tls_port = free_port()
        conf = UNBOUND_CONF.format(port=self.port, dir=workdir)
        conf = conf.replace(
            "    port: ",
            f"    interface: 127.0.0.1@{self.tls_port}\n"
            f"    tls-port: {self.tls_port}\n"
            f'    tls-service-key: "{pki.key}"\n'
            f'    tls-service-pem: "{pki.cert}"\n'
            "    port: ",
            1,
        )
        (workdir / "unbound.conf").write_text(conf)
        self._start([UNBOUND, "-d", "-c", str(workdir / "unbound.conf")], "unbound")


@dataclass
class Setup:
    kdns: KdnsCommand
    pki: Pki
    dot_upstream: int  # forward . tls://unbound, right servername
    wrong_name: int  # forward . tls://unbound, wrong servername
    doh_upstream: int  # forward . https://kdns's own DoH listener, POST
    doh_get: int  # the same with doh_method GET
    dot: int  # tls:// listener
    doh: int  # https:// listener
    metrics: int
    mtls: int  # tls:// listener that requires a client certificate
    via_mtls: int  # forward . tls://mtls with the client certificate (tls CERT KEY CA)
    unbound_tls: int

    def scrape(self) -> str:
        status, text = http_get(f"http://127.0.0.1:{self.metrics}/metrics")
        assert status == 200
        return text


COREFILE = """\
.:{dot_upstream} {{
    prometheus 127.0.0.1:{metrics}
    forward . tls://127.0.0.1:{unbound_tls} {{
        tls {ca}
        tls_servername {name}
        expire 30s
    }}
}}
.:{wrong_name} {{
    forward . tls://127.0.0.1:{unbound_tls} {{
        tls {ca}
        tls_servername wrong.example.test
        max_fails 0
    }}
}}
.:{doh_upstream} {{
    forward . https://127.0.0.1:{doh} {{
        tls {ca}
        tls_servername {name}
    }}
}}
.:{doh_get} {{
    forward . https://127.0.0.1:{doh}/dns-query {{
        tls {ca}
        tls_servername {name}
        doh_method GET
    }}
}}
tls://.:{dot} {{
    tls {cert} {key}
    forward . 127.0.0.1:{dnsmasq}
}}
https://.:{doh} {{
    tls {cert} {key}
    forward . 127.0.0.1:{dnsmasq}
}}
tls://.:{mtls} {{
    tls {cert} {key} {ca} {{
        client_auth require_and_verify
    }}
    forward . 127.0.0.1:{dnsmasq}
}}
.:{via_mtls} {{
    forward . tls://127.0.0.1:{mtls} {{
        tls {client_cert} {client_key} {ca}
        tls_servername {name}
    }}
}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    upstream_pki = make_pki(tmp_path_factory.mktemp("upstream-pki"))
    upstream_pki.ca_file.write_bytes(pki.ca.cert_pem)  # one CA for both, simpler to trust
    upstream_pki.ca = pki.ca
    upstream_pki.issue()
    unbound = UnboundTls(tmp_path_factory.mktemp("unbound"), upstream_pki)
    dnsmasq = Dnsmasq({"example.org": "192.0.2.1"})
    ports = {k: free_port() for k in ("dot_upstream", "wrong_name", "doh_upstream", "doh_get")}
    ports |= {k: free_port() for k in ("dot", "doh", "metrics", "mtls", "via_mtls")}
    client_cert, client_key = client_pair(pki)
    corefile = tmp_path_factory.mktemp("conf") / "Corefile"
    corefile.write_text(
        COREFILE.format(
            **ports,
            unbound_tls=unbound.tls_port,
            dnsmasq=dnsmasq.port,
            ca=pki.ca_file,
            cert=pki.cert,
            key=pki.key,
            name=NAME,
            client_cert=client_cert,
            client_key=client_key,
        )
    )
    kdns = KdnsCommand(["-conf", str(corefile)], ports["dot_upstream"])
    try:
        wait_until(lambda: kdns.rcode("www.example.net.") is not None, timeout=20)
        yield Setup(kdns, pki, **ports, unbound_tls=unbound.tls_port)
    finally:
        kdns.stop()
        unbound.stop()
        dnsmasq.stop()


def udp(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=5)


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rr.to_text() for rrset in msg.answer for rr in rrset if rrset.rdtype == 1)


def metric(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (summed over the rest)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- forward . tls:// (DoT upstream: unbound) --------------------------------------------


def test_forward_over_tls_to_unbound_reuses_the_connection(setup: Setup) -> None:
    for _ in range(5):
        reply = udp(setup.dot_upstream, "www.example.net.")
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == ["192.0.2.10"]
    assert udp(setup.dot_upstream, "nothing.example.net.").rcode() == dns.rcode.NXDOMAIN
    text = setup.scrape()
    to = f"127.0.0.1:{setup.unbound_tls}"
    misses = metric(text, "coredns_proxy_conn_cache_misses_total", to=to, proto="tcp-tls")
    hits = metric(text, "coredns_proxy_conn_cache_hits_total", to=to, proto="tcp-tls")
    assert misses == 1 and hits >= 5, (misses, hits)
    assert metric(text, "coredns_proxy_request_duration_seconds_count", to=to, rcode="NOERROR") >= 5


def test_wrong_tls_servername_fails_verification(setup: Setup) -> None:
    reply = udp(setup.wrong_name, "www.example.net.")
    assert reply.rcode() == dns.rcode.SERVFAIL
    text = setup.scrape()
    to = f"127.0.0.1:{setup.unbound_tls}"
    assert metric(text, "coredns_proxy_conn_cache_misses_total", to=to, proto="tcp-tls") >= 2
    assert "Traceback" not in setup.kdns.log


def test_forward_tls_client_certificate_passes_require_and_verify(setup: Setup) -> None:
    """``forward ... { tls CERT KEY CA }`` presents CERT; the listener demands and checks it."""
    assert addresses(udp(setup.via_mtls, "example.org.")) == ["192.0.2.1"]
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, dns.exception.DNSException)):
        dns.query.tls(
            dns.message.make_query("example.org.", "A"),
            "127.0.0.1",
            port=setup.mtls,
            timeout=5,
            ssl_context=setup.pki.client(),  # trusts the server, has no certificate
            server_hostname=NAME,
        )


# -- tls:// listener (DoT) ---------------------------------------------------------------


def test_dot_listener_answers_dnspython_with_the_certificate(setup: Setup) -> None:
    q = dns.message.make_query("example.org.", "A")
    reply = dns.query.tls(
        q,
        "127.0.0.1",
        port=setup.dot,
        timeout=5,
        ssl_context=setup.pki.client(),
        server_hostname=NAME,
    )
    assert addresses(reply) == ["192.0.2.1"]


def test_dot_listener_refuses_a_client_that_does_not_trust_it(setup: Setup) -> None:
    q = dns.message.make_query("example.org.", "A")
    with pytest.raises(ssl.SSLCertVerificationError):
        dns.query.tls(
            q,
            "127.0.0.1",
            port=setup.dot,
            timeout=5,
            ssl_context=ssl.create_default_context(),
            server_hostname=NAME,
        )


@pytest.mark.skipif(DIG is None, reason="dig not installed")
@pytest.mark.parametrize("transport", ["+tls", "+https"])
def test_dig_over_tls_and_https(setup: Setup, transport: str) -> None:
    port = setup.dot if transport == "+tls" else setup.doh
    out = subprocess.run(
        [
            str(DIG),
            "@127.0.0.1",
            "-p",
            str(port),
            transport,
            f"+tls-ca={setup.pki.ca_file}",
            f"+tls-hostname={NAME}",
            "+short",
            "+tries=1",
            "+timeout=5",
            "example.org",
            "A",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.stdout.split() == ["192.0.2.1"], out


# -- https:// listener (DoH) -------------------------------------------------------------


@pytest.mark.parametrize("http_version", ["H1", "H2"])
@pytest.mark.parametrize("post", [True, False])
def test_doh_listener_answers_get_and_post_over_http1_and_http2(
    setup: Setup, http_version: str, post: bool
) -> None:
    q = dns.message.make_query("example.org.", "A")
    reply = dns.query.https(
        q,
        f"https://127.0.0.1:{setup.doh}/dns-query",
        timeout=5,
        post=post,
        verify=setup.pki.client(),
        http_version=dns.query.HTTPVersion[http_version],
    )
    assert addresses(reply) == ["192.0.2.1"]


def test_doh_http_answers_are_rfc8484(setup: Setup) -> None:
    q = dns.message.make_query("example.org.", "A")
    base = f"https://127.0.0.1:{setup.doh}"
    with httpx2.Client(verify=setup.pki.client(), timeout=5) as client:
        ok = client.post(
            base + "/dns-query",
            content=q.to_wire(),
            headers={"content-type": "application/dns-message"},
        )
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/dns-message"
        # dnsmasq's --local-ttl=300: the answer may be cached that long.
        assert ok.headers["cache-control"] == "max-age=300.000000"
        assert dns.message.from_wire(ok.content).id == q.id
        assert client.post(base + "/other", content=q.to_wire()).status_code == 404
        json_api = client.post(
            base + "/dns-query", content=b"{}", headers={"content-type": "application/dns-json"}
        )
        assert json_api.status_code == 400
        assert client.get(base + "/dns-query").status_code == 400  # no ?dns=
    text = setup.scrape()
    server = f"https://:{setup.doh}"
    assert metric(text, "coredns_https_responses_total", server=server, status="200") >= 1
    assert metric(text, "coredns_https_responses_total", server=server, status="404") >= 1
    assert metric(text, "coredns_https_responses_total", server=server, status="400") >= 2


# -- forward . https:// (DoH upstream: kdns's own listener) ------------------------------


@pytest.mark.parametrize("which", ["doh_upstream", "doh_get"])
def test_forward_over_https(setup: Setup, which: str) -> None:
    port = getattr(setup, which)
    for _ in range(3):
        assert addresses(udp(port, "example.org.")) == ["192.0.2.1"]
    text = setup.scrape()
    to = f"127.0.0.1:{setup.doh}"
    assert metric(text, "coredns_proxy_conn_cache_hits_total", to=to, proto="https") >= 2
    assert metric(text, "coredns_proxy_request_duration_seconds_count", to=to) >= 3


# -- metrics: proto and server labels as CoreDNS's --------------------------------------


def test_requests_are_counted_per_server_with_proto_tcp(setup: Setup) -> None:
    q = dns.message.make_query("example.org.", "A")
    client = setup.pki.client()
    dns.query.tls(q, "127.0.0.1", port=setup.dot, ssl_context=client, server_hostname=NAME)
    text = setup.scrape()
    for server in (f"tls://:{setup.dot}", f"https://:{setup.doh}"):
        assert metric(text, "coredns_dns_requests_total", server=server, proto="tcp") >= 1, server
        assert metric(text, "coredns_dns_requests_total", server=server, proto="udp") == 0


def test_served_certificates_expiry_is_exported(setup: Setup) -> None:
    text = setup.scrape()
    for server in (f"tls://:{setup.dot}", f"https://:{setup.doh}", f"tls://:{setup.mtls}"):
        expiry = metric(
            text,
            "kdns_tls_certificate_expiry_timestamp_seconds",
            listener=server,
            path=str(setup.pki.cert),
        )
        assert expiry > time.time(), (server, expiry)


# -- certificate rotation ---------------------------------------------------------------


def served_der(port: int, pki: Pki) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pki.client().wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        der: bytes = tls.getpeercert(binary_form=True)
        return der


def test_rotated_certificate_reaches_new_connections(setup: Setup) -> None:
    before = served_der(setup.dot, setup.pki)
    # A kept-alive DoT connection from before the rotation keeps answering.
    kept = dns.query.tls(
        dns.message.make_query("example.org.", "A"),
        "127.0.0.1",
        port=setup.dot,
        ssl_context=setup.pki.client(),
        server_hostname=NAME,
        timeout=5,
    )
    assert addresses(kept) == ["192.0.2.1"]
    new = setup.pki.issue()
    assert new != before
    for port in (setup.dot, setup.doh):
        deadline = time.monotonic() + 10
        while served_der(port, setup.pki) != new:
            assert time.monotonic() < deadline, "the new certificate was not served"
            time.sleep(0.2)
    assert addresses(udp(setup.doh_upstream, "example.org.")) == ["192.0.2.1"]
    assert "certificate" in setup.kdns.log and "reloaded" in setup.kdns.log


# -- Corefile reload ---------------------------------------------------------------------


def test_reload_moves_a_listener_to_new_files_and_refuses_a_transport_change(
    tmp_path: Path,
) -> None:
    first, second = make_pki(tmp_path / "first"), make_pki(tmp_path / "second")
    second.ca = first.ca  # one CA: one client trusts both
    second.ca_file.write_bytes(first.ca.cert_pem)
    new = second.issue()
    dot, plain = free_port(), free_port()
    path = tmp_path / "Corefile"

    def corefile(pki: Pki, scheme: str = "tls") -> str:
        return (
            f"{scheme}://.:{dot} {{\n    tls {pki.cert} {pki.key}\n    reload 2s\n    whoami\n}}\n"
            f".:{plain} {{\n    whoami\n}}\n"
        )

    def swap(text: str) -> None:
        staged = path.with_name("Corefile.new")
        staged.write_text(text)
        staged.replace(path)
        kdns.proc.send_signal(signal.SIGUSR1)

    path.write_text(corefile(first))
    kdns = KdnsCommand(["-conf", str(path)], plain)
    try:
        wait_until(lambda: kdns.rcode("whoami.example.") is not None, timeout=20)
        wait_until(lambda: "Running configuration SHA512" in kdns.log, timeout=10)
        assert served_der(dot, first) != new
        swap(corefile(second))
        wait_until(lambda: served_der(dot, first) == new, timeout=15)
        swap(corefile(second, "https"))
        wait_until(lambda: "needs a restart" in kdns.log, timeout=15)
        kdns.alive()
        assert served_der(dot, first) == new  # still the DoT listener, still serving
    finally:
        kdns.stop()
