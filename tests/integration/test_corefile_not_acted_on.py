"""Nothing accepted silently: every option kdns parses but does not act on is warned
about, by ``kdns validate`` and in the log at start, located at its file and line.

A case is (Corefile text, the warning's line number, the warning text after the
location). The Corefiles load in CoreDNS too, so refusing them would break drop-in use;
a warning keeps them loading and tells the operator what kdns does instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdns.plugins.validate import WARNING, validate
from tests.support.process import ROOT, KdnsCommand, free_port, wait_until

pytestmark = pytest.mark.timeout(60)

K8S = "kubernetes cluster.local"
CASES: list[tuple[str, str, int, str]] = [
    (
        "errors consolidate",
        'errors {\n consolidate 5m ".* i/o timeout$"\n}',
        3,
        "plugin/errors: {file}:3 - consolidate is not acted on by kdns: every upstream "
        "failure is logged on its own line",
    ),
    (
        "errors stacktrace",
        "errors {\n stacktrace\n}",
        3,
        "plugin/errors: {file}:3 - stacktrace is not acted on by kdns: an internal error is "
        "always logged with its traceback",
    ),
    *[
        (
            f"kubernetes {option}",
            f"{K8S} {{\n {option} 10\n}}",
            3,
            f"plugin/kubernetes: {{file}}:3 - {option} is not acted on by kdns: kdns sends "
            "no burst of API requests to limit",
        )
        for option in ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")
    ],
    (
        "kubernetes bare ignore",
        f"{K8S} {{\n ignore\n}}",
        3,
        "plugin/kubernetes: {file}:3 - ignore is not acted on by kdns: a bare ignore does nothing",
    ),
    (
        "kubernetes tls in-cluster",
        f"{K8S} {{\n tls c.crt c.key ca.crt\n}}",
        3,
        "plugin/kubernetes: {file}:3 - tls is not acted on by kdns: without endpoint, kdns "
        "connects in-cluster",
    ),
    (
        "kubernetes tls with kubeconfig",
        f"{K8S} {{\n kubeconfig /k.yaml\n tls c.crt c.key ca.crt\n}}",
        4,
        "plugin/kubernetes: {file}:4 - tls is not acted on by kdns: with kubeconfig, its own "
        "client certificate and CA are used",
    ),
    (
        "kubernetes tls over http",
        f"{K8S} {{\n endpoint http://127.0.0.1:8080\n tls c.crt c.key ca.crt\n}}",
        4,
        "plugin/kubernetes: {file}:4 - tls is not acted on by kdns: endpoint "
        "http://127.0.0.1:8080 is not https",
    ),
    (
        "kubernetes labels with manifests",
        f"{K8S} {{\n manifests .\n labels app=web\n}}",
        4,
        "plugin/kubernetes: {file}:4 - labels is not acted on by kdns: the source is the "
        "manifests folder, not an API server",
    ),
    (
        "loadbalance prefer",
        "loadbalance round_robin {\n prefer 10.0.0.0/8\n}",
        3,
        "plugin/loadbalance: {file}:3 - prefer is not acted on by kdns: every address of an "
        "answer rotates",
    ),
    (
        "loadbalance weighted",
        "loadbalance weighted /weights.txt",
        2,
        "plugin/loadbalance: {file}:2 - weighted is not acted on by kdns: answers rotate "
        "round_robin; the weight file is not read",
    ),
    (
        "template upstream",
        'template IN A example.org {\n answer "{{ .Name }} 60 IN A 10.0.0.1"\n upstream\n}',
        4,
        "plugin/template: {file}:4 - upstream is not acted on by kdns: deprecated",
    ),
    (
        "forward tls to a dns upstream",
        "forward . 127.0.0.1:5300 {\n tls_servername dns.example\n}",
        3,
        "plugin/forward: {file}:3 - tls_servername is not acted on by kdns: no TO is tls://",
    ),
]


def _corefile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(f".:{free_port()} {{\n{body}\n}}\n")
    return path


@pytest.mark.parametrize(("body", "line", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_validate_warns_with_file_and_line(
    tmp_path: Path, body: str, line: int, expected: str
) -> None:
    path = _corefile(tmp_path, body)
    lines = validate(str(path))
    wanted = WARNING + expected.format(file=path)
    assert any(w.startswith(wanted) for w in lines), lines
    assert f"{path}:{line} - " in wanted
    assert all(w.startswith(WARNING) for w in lines), lines


def test_options_kdns_acts_on_are_not_warned(tmp_path: Path) -> None:
    """The counterpart: a Corefile using only implemented options validates clean."""
    path = _corefile(
        tmp_path,
        f"errors stdout\nprometheus 127.0.0.1:0\nloadbalance round_robin\n"
        f"{K8S} clusterset.local {{\n endpoint https://127.0.0.1:6443\n tls c.crt c.key ca.crt\n"
        f" ignore empty_service\n zonal\n multicluster clusterset.local\n}}\n"
        f"forward . tls://127.0.0.1:853 {{\n"
        f" tls_servername dns.example\n}}",
    )
    assert validate(str(path)) == []


def test_kdns_validate_and_the_start_log_show_the_warnings(tmp_path: Path) -> None:
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    errors {{
        consolidate 5m ".* i/o timeout$"
    }}
    loadbalance round_robin {{
        prefer 10.0.0.0/8
    }}
    whoami
}}
"""
    )
    expected = [
        f"plugin/errors: {corefile}:3 - consolidate is not acted on by kdns",
        f"plugin/loadbalance: {corefile}:6 - prefer is not acted on by kdns",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "kdns", "validate", str(corefile)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for text in expected:
        assert f"[WARNING] {text}" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith(": OK")
    proc = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: proc.rcode("example.org") == 0, timeout=20)
        for text in expected:
            assert proc.log.count(text) == 1, proc.log
    finally:
        proc.stop()
