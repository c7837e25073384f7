"""`kdns envinject certs` against deploy/: the names it signs for are the ones the webhook
configurations call, and the commands it prints install the pair, run with the real
kubectl against the API emulator."""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from cryptography import x509

from kdns.envinject import certs

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = "/usr/bin/kubectl"
WEBHOOK_TARGETS = ("overlays/envinject", "overlays/clusterip")


def _apiemu() -> ModuleType:
    """The API emulator, wherever the test tree keeps it (the one import to fix if it moves)."""
    try:
        from tests.support import apiemu  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from tests.support import apiemu  # type: ignore[no-redef,unused-ignore]
    return apiemu


@functools.cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy" / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _webhook_configurations() -> dict[str, dict[str, Any]]:
    found = {}
    for target in WEBHOOK_TARGETS:
        for doc in _render(target):
            if doc["kind"] == "MutatingWebhookConfiguration":
                found[doc["metadata"]["name"]] = doc
    return found


def _sans(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.DNSName)


def test_defaults_are_the_names_deploy_uses() -> None:
    configurations = _webhook_configurations()
    assert set(configurations) == set(certs.WEBHOOK_CONFIGURATIONS)
    for config in configurations.values():
        for webhook in config["webhooks"]:
            ref = webhook["clientConfig"]["service"]
            assert (ref["name"], ref["namespace"]) == (
                certs.DEFAULT_SERVICE,
                certs.DEFAULT_NAMESPACE,
            ), config["metadata"]["name"]
    for target in WEBHOOK_TARGETS:
        docs = _render(target)
        services = [d for d in docs if d["kind"] == "Service"]
        assert (certs.DEFAULT_SERVICE, certs.DEFAULT_NAMESPACE) in {
            (s["metadata"]["name"], s["metadata"]["namespace"]) for s in services
        }
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        secrets = {
            v["secret"]["secretName"]
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "secret" in v
        }
        assert certs.DEFAULT_SECRET in secrets
    # What the API server dials, `<service>.<namespace>.svc`, is in the certificate.
    issued = certs.generate(certs.DEFAULT_SERVICE, certs.DEFAULT_NAMESPACE)
    assert f"{certs.DEFAULT_SERVICE}.{certs.DEFAULT_NAMESPACE}.svc" in _sans(
        issued.serving.cert_pem
    )


def test_cert_manager_issues_from_a_ca() -> None:
    """cainjector's caBundle is the CA, which a renewal of the serving pair leaves alone."""
    docs = _render("overlays/envinject")
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config = by_kind_name["MutatingWebhookConfiguration", "kdns-envinject"]
    source = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, _, name = source.partition("/")
    serving = by_kind_name["Certificate", name]
    assert serving["metadata"]["namespace"] == namespace == certs.DEFAULT_NAMESPACE
    assert serving["spec"]["secretName"] == certs.DEFAULT_SECRET
    assert not serving["spec"].get("isCA", False)
    issuer = by_kind_name[
        serving["spec"]["issuerRef"].get("kind", "Issuer"), serving["spec"]["issuerRef"]["name"]
    ]
    assert "ca" in issuer["spec"], "the serving certificate comes from a CA Issuer"
    (ca,) = [
        d
        for d in docs
        if d["kind"] == "Certificate"
        and d["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
    ]
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never"
    root = by_kind_name[
        ca["spec"]["issuerRef"].get("kind", "Issuer"), ca["spec"]["issuerRef"]["name"]
    ]
    assert "selfSigned" in root["spec"]


def _sh(command: str, kubeconfig: Path | None = None) -> str:
    env = os.environ | {"PATH": f"{Path(KUBECTL).parent}:{os.environ.get('PATH', '')}"}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def test_printed_commands_install_the_pair(tmp_path: Path) -> None:
    """The commands as printed, run by a shell with the real kubectl (the caBundle patches
    against the emulator, which keeps no Secrets: the Secret as its dry run renders it)."""
    issued = certs.generate(certs.DEFAULT_SERVICE, certs.DEFAULT_NAMESPACE)
    cert, key, _ = certs.write(issued, tmp_path / "tls dir")  # a space: quoting matters
    secret_command, *patches = certs.kubectl_commands(issued, cert, key)

    render, _, apply = secret_command.partition(" | ")
    assert apply == "kubectl apply --server-side -f -"
    secret = yaml.safe_load(_sh(render))
    assert secret["kind"] == "Secret" and secret["type"] == "kubernetes.io/tls"
    meta = secret["metadata"]
    assert (meta["name"], meta["namespace"]) == (certs.DEFAULT_SECRET, certs.DEFAULT_NAMESPACE)
    assert base64.b64decode(secret["data"]["tls.crt"]) == issued.serving.cert_pem
    assert base64.b64decode(secret["data"]["tls.key"]) == issued.serving.key_pem

    assert len(patches) == len(certs.WEBHOOK_CONFIGURATIONS)
    apiemu = _apiemu()
    with apiemu.EmulatorThread(bookmark_interval=5.0) as emu:
        for config in _webhook_configurations().values():
            emu.put(config)
        kubeconfig = tmp_path / "kubeconfig"
        emu.write_kubeconfig(kubeconfig)
        for command in patches:
            _sh(command, kubeconfig)
        for name in certs.WEBHOOK_CONFIGURATIONS:
            config = emu.get(
                "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", name
            )
            assert config is not None
            (webhook,) = config["webhooks"]
            assert webhook["clientConfig"]["caBundle"] == issued.ca_bundle
            assert webhook["clientConfig"]["service"]["name"] == certs.DEFAULT_SERVICE


def test_cli_defaults_and_prints_the_commands(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    done = subprocess.run(
        [sys.executable, "-m", "kdns", "envinject", "certs", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert f"{certs.DEFAULT_SERVICE}.{certs.DEFAULT_NAMESPACE}.svc" in _sans(
        (out / "tls.crt").read_bytes()
    )
    printed = done.stdout + done.stderr
    assert f"create secret tls {certs.DEFAULT_SECRET}" in printed
    for name in certs.WEBHOOK_CONFIGURATIONS:
        assert f"kubectl patch mutatingwebhookconfiguration {name}" in printed
