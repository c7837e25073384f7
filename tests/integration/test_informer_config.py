"""Connection settings (in-cluster over real TLS, client certificates, exec plugins,
token files), the snapshot codec, and one watch event all the way to a compiled answer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kdns.cluster import compiler, objects, resolver, shrink, table
from kdns.cluster.kube import client, config, informer, snapshot
from kdns.dns import names, wire
from kdns.envinject import certs
from tests.integration.test_informer import aio, running
from tests.support import apiemu
from tests.support.apiemu import builders

pytestmark = pytest.mark.timeout(60)


# -- TLS in front of the emulator ----------------------------------------------------------


def _client_pair(ca: certs.Pair, name: str) -> certs.Pair:
    """A client certificate (clientAuth), as kubeadm issues for kubectl users."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certs.Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@contextlib.asynccontextmanager
async def tls_front(
    target_port: int, tmp_path: Path, require_client_cert: bool = False
) -> AsyncIterator[tuple[int, Path, certs.Pair]]:
    """A TLS-terminating TCP relay to the emulator: (port, CA file, CA pair)."""
    ca = certs.make_ca("test apiserver CA")
    serving = certs.issue(ca, ["kubernetes.default.svc"], ["127.0.0.1"])
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "server.crt").write_bytes(serving.cert_pem)
    (tmp_path / "server.key").write_bytes(serving.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tmp_path / "ca.crt")

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, tmp_path / "ca.crt", ca
    finally:
        server.close()


@aio
async def test_in_cluster_over_tls_with_a_rotating_token(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("sa-token-1")
    async with (
        running(start=False, token="sa-token-1") as run,
        tls_front(run.emu.port, tmp_path) as (port, ca_file, _),
    ):
        (account / "ca.crt").write_bytes(ca_file.read_bytes())
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                       "KUBERNETES_SERVICE_PORT": str(port)}  # fmt: skip
        conn = config.load(
            config.ConnectionOptions(in_cluster=True),
            environ=environ,
            service_account_dir=account,
        )
        assert conn.base_url == f"https://127.0.0.1:{port}"
        assert isinstance(conn.credentials, config.TokenFile)
        api = client.Client(conn)
        try:
            listing = await api.list("/api/v1/namespaces", shrink.namespace)
            assert {n.name for n in listing.items} >= {"default", "kube-system"}
            (account / "token").write_text("sa-token-2")  # the kubelet rotated it
            run.emu.set_token("sa-token-2")
            listing = await api.list("/api/v1/namespaces", shrink.namespace)  # 401, re-read
            assert listing.items
        finally:
            await api.close()
        codes = [r.path for r in run.emu.requests()]
        assert len(codes) == 3  # list, rejected list, list with the new token


@aio
async def test_kubeconfig_with_client_certificates_and_a_ca(tmp_path: Path) -> None:
    async with (
        running(start=False) as run,
        tls_front(run.emu.port, tmp_path, require_client_cert=True) as (port, _, pair),
    ):
        user = _client_pair(pair, "kdns")
        (tmp_path / "client.crt").write_bytes(user.cert_pem)
        (tmp_path / "client.key").write_bytes(user.key_pem)
        kubeconfig = {
                "apiVersion": "v1", "kind": "Config", "current-context": "other",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                        "certificate-authority": "ca.crt"}}],
                "users": [{"name": "u", "user": {"client-certificate": "client.crt",
                                                 "client-key": "client.key"}}],
                "contexts": [{"name": "tls", "context": {"cluster": "c", "user": "u"}},
                             {"name": "other", "context": {"cluster": "nowhere", "user": "u"}}],
            }  # fmt: skip
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        conn = config.load(config.ConnectionOptions(kubeconfig=str(path), context="tls"))
        assert isinstance(conn.credentials, config.NoCredentials)
        assert "context tls" in conn.source
        api = client.Client(conn)
        try:
            listing = await api.list("/api/v1/namespaces", shrink.namespace)
        finally:
            await api.close()
        assert listing.items


@aio
async def test_kubeconfig_exec_credential_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',\n"
        "  'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}))\n"
    )
    async with running(start=False, token="from-exec") as run:
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "x",
            "clusters": [{"name": "c", "cluster": {"server": run.emu.url}}],
            "users": [{"name": "u", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": sys.executable, "args": [str(plugin)],
                "interactiveMode": "Never"}}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        }  # fmt: skip
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        conn = config.load(config.ConnectionOptions(kubeconfig=str(path)))
        assert isinstance(conn.credentials, config.LoaderCredentials | config.StaticToken)
        assert await conn.credentials.headers() == {"Authorization": "Bearer from-exec"}
        api = client.Client(conn)
        try:
            assert (await api.list("/api/v1/namespaces", shrink.namespace)).items
        finally:
            await api.close()


def test_connection_choices_follow_coredns(tmp_path: Path) -> None:
    bare = config.load(config.ConnectionOptions(endpoint="http://10.0.0.1:8080/"))
    assert (bare.base_url, bare.ssl, type(bare.credentials)) == (
        "http://10.0.0.1:8080", False, config.NoCredentials)  # fmt: skip
    path = apiemu.kubeconfig.write(tmp_path / "kc", "http://127.0.0.1:1", token="t")
    overridden = config.load(
        config.ConnectionOptions(endpoint="http://127.0.0.2:2", kubeconfig=str(path))
    )
    assert overridden.base_url == "http://127.0.0.2:2"
    assert isinstance(overridden.credentials, config.StaticToken)
    with pytest.raises(config.ConfigError, match="in-cluster"):
        config.load(config.ConnectionOptions(), environ={}, service_account_dir=tmp_path)
    with pytest.raises(config.ConfigError, match="kubeconfig"):
        config.load(config.ConnectionOptions(kubeconfig=str(tmp_path / "nope")))
    with pytest.raises(config.ConfigError, match="kubeconfig"):
        config.load(config.ConnectionOptions(kubeconfig=str(path), context="missing"))


@aio
async def test_token_file_is_reread_after_its_period(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    source = config.TokenFile(token, period=0.05)
    assert await source.headers() == {"Authorization": "Bearer one"}
    token.write_text("two")
    await asyncio.sleep(0.06)  # the period itself is what is tested here
    assert await source.headers() == {"Authorization": "Bearer two"}
    token.unlink()  # mid-rotation: keep the last good token
    source.invalidate()
    assert await source.headers() == {"Authorization": "Bearer two"}


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    backoff = informer.Backoff(initial=1, factor=2, cap=8, jitter=0.25)
    delays = [backoff.delay(n) for n in range(6)]
    assert 0.75 <= delays[0] <= 1 and 1.5 <= delays[1] <= 2 and all(d <= 8 for d in delays)
    assert delays[5] >= 6
    assert 5 <= backoff.delay(0, retry_after=5) <= 6.25
    # Retry-After is the wait however many attempts failed: the backoff does not grow it.
    assert 1 <= backoff.delay(30, retry_after=1) <= 1.25
    assert backoff.delay(0, retry_after=3600) <= backoff.retry_after_cap * 1.25


# -- the snapshot codec -------------------------------------------------------------------


def test_snapshot_round_trip_keeps_objects_equal(tmp_path: Path) -> None:
    services = [
        shrink.service(builders.service("web", selector={"app": "web"}, labels={"a": "b"})),
        shrink.service(builders.service("hl", cluster_ip="None", ports=())),
        shrink.service(builders.service("ext", type_="ExternalName", external_name="x.org")),
    ]
    named = builders.service("named")
    named["spec"]["ports"][0]["targetPort"] = "http"
    services.append(shrink.service(named))
    services.append(shrink.service(builders.service("v6", cluster_ip="FD00::A")))  # as written
    slices = [
        shrink.endpoint_slice(
            builders.endpoint_slice(
                "web", addresses=["10.0.0.1", "10.0.0.2"], hostname="h", ready=False
            )
        ),
        shrink.endpoint_slice(
            builders.endpoint_slice("v6", addresses=["fd00::1"], address_type="IPv6", ports=())
        ),
    ]
    namespaces = [objects.Namespace("default", (("k", "v"),))]
    taken = snapshot.Snapshot(time.time(), services, slices, namespaces)
    path = tmp_path / "deep" / "snap.json"
    snapshot.write(path, taken)
    assert list(tmp_path.joinpath("deep").iterdir()) == [path]  # no temp file left
    back = snapshot.decode(path.read_bytes())
    assert back == taken


# -- one event to one compiled answer -------------------------------------------------------


@aio
async def test_watch_event_reaches_the_compiled_answer() -> None:
    async with running() as run:
        settings = resolver.Settings()
        answers = table.Table(run.store, resolver.Resolver(run.store, settings))
        comp = compiler.Compiler(run.store, answers, observe=run.informers.compiled)
        task = asyncio.create_task(comp.run(), name="compiler")
        try:
            await run.watching()
            qname = names.to_wire("web.default.svc.cluster.local.")

            def serves(ip: str) -> bool:
                answer = answers.lookup(qname, wire.A)
                return (
                    answer is not None
                    and answer.rcode == wire.NOERROR
                    and socket.inet_aton(ip) in answer.body
                )

            run.emu.put(builders.service("web", cluster_ip="10.96.0.20"))
            await run.until(lambda: serves("10.96.0.20"))
            run.emu.put(builders.service("web", cluster_ip="10.96.0.21"))
            await run.until(lambda: serves("10.96.0.21"))
            assert not serves("10.96.0.20")
            run.emu.delete("v1", "Service", "web", "default")
            await run.until(
                lambda: (
                    (a := answers.lookup(qname, wire.A)) is not None and a.rcode == wire.NXDOMAIN
                )
            )
            assert run.metric("kdns_propagation_seconds_count") >= 3
            assert run.metric("kdns_propagation_seconds_sum") < 1.0

            # A headless service's slice with the controller's trigger time is measured
            # as CoreDNS measures dns_programming_duration.
            run.emu.put(builders.service("hl", cluster_ip="None", selector={"app": "hl"}))
            eps = builders.endpoint_slice("hl", addresses=["10.244.3.3"])
            stamp = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
            eps["metadata"]["annotations"] = {
                informer.TRIGGER_TIME: stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            }
            await run.until(lambda: ("default", "hl") in run.store.services)
            run.emu.put(eps)
            await run.until(lambda: ("default", "hl-abcde") in run.store.slices)
            labels = {"service_kind": "headless_with_selector"}
            assert (
                run.metric("coredns_kubernetes_dns_programming_duration_seconds_count", labels) == 1
            )
            assert (
                1.0
                < run.metric("coredns_kubernetes_dns_programming_duration_seconds_sum", labels)
                < 5.0
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
