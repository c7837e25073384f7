"""deploy/migrate.sh and deploy/rollback.sh against kubeadm's CoreDNS, with the real kubectl.

The API emulator is seeded with what kubeadm installs (tests/fixtures/kubeadm/coredns.yaml);
the scripts run with the real kubectl and the real ``kdns validate``. After
migrate-then-rollback every object of the cluster is what it was, apart from what the
server owns (resourceVersion, uid, timestamps, managedFields, generation) and the
controllers' status; and a pre-flight that fails changes nothing at all.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import apiemu
from tests.support.apiemu import resources

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBEADM = ROOT / "tests" / "fixtures" / "kubeadm" / "coredns.yaml"
KUBECTL = "/usr/bin/kubectl"
KDNS = f"{sys.executable} -m kdns"
SERVER_OWNED = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation")

Obj = dict[str, Any]
Snapshot = dict[tuple[str, str, str, str], Obj]


@pytest.fixture
def emu() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=5.0) as running:
        for obj in yaml.safe_load_all(KUBEADM.read_text()):
            running.put(obj)
        yield running


def snapshot(emu: apiemu.EmulatorThread) -> Snapshot:
    """Every object the emulator holds, by (apiVersion, kind, namespace, name)."""
    found: Snapshot = {}
    for resource in resources.RESOURCES:
        for obj in emu.objects(resource.api_version, resource.kind):
            meta = obj["metadata"]
            key = (resource.api_version, resource.kind, meta.get("namespace", ""), meta["name"])
            found[key] = obj
    return found


def comparable(obj: Obj) -> Obj:
    """An object without what the server and the controllers own."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for field in SERVER_OWNED:
        out["metadata"].pop(field, None)
    return out


def run(emu: apiemu.EmulatorThread, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = tmp_path / "kubeconfig"
    if not kubeconfig.exists():
        emu.write_kubeconfig(kubeconfig)
    kubectl = f"{KUBECTL} --kubeconfig {kubeconfig} --cache-dir {tmp_path / 'cache'}"
    env = os.environ | {"KUBECTL": kubectl, "KDNS": KDNS, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["sh", *args], capture_output=True, text=True, timeout=90, env=env, cwd=ROOT, check=False
    )


def migrate(
    emu: apiemu.EmulatorThread, tmp_path: Path, target: str, *flags: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    backup = tmp_path / "backup"
    done = run(emu, tmp_path, str(DEPLOY / "migrate.sh"), *flags, str(DEPLOY / target), str(backup))
    return done, backup


def rendered(target: str) -> list[Obj]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# (target, flags): the overlays change the Corefile by design (kdns's own directives).
TARGETS = [
    ("base", ()),
    ("overlays/clusterip", ("--replace-corefile",)),
    ("overlays/nodelocal", ()),
    ("overlays/autoscaler", ()),
]


@pytest.mark.parametrize(("target", "flags"), TARGETS)
def test_migrate_then_rollback_restores_every_object(
    emu: apiemu.EmulatorThread, tmp_path: Path, target: str, flags: tuple[str, ...]
) -> None:
    before = snapshot(emu)

    done, backup = migrate(emu, tmp_path, target, *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    migrated = snapshot(emu)
    applied = rendered(target)
    for obj in applied:
        assert key(obj) in migrated, f"not applied: {key(obj)}"
    coredns = migrated[("apps/v1", "Deployment", "kube-system", "coredns")]
    assert coredns["spec"]["template"]["spec"]["containers"][0]["image"].startswith("kdns:")
    role = migrated[("rbac.authorization.k8s.io/v1", "ClusterRole", "", "system:coredns")]
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert "endpoints" not in granted and "pods" not in granted, "narrowed in place"
    assert ("networking.k8s.io/v1", "NetworkPolicy", "kube-system", "coredns") in migrated

    # The backup holds every object the migration changed, as it was.
    backed_up = list(yaml.safe_load_all((backup / "restore.yaml").read_text()))
    changed = {k for k in before if any(k[1:] == key(o)[1:] for o in applied)}
    assert {key(o) for o in backed_up if o} == changed
    for obj in filter(None, backed_up):
        assert obj == comparable(before[key(obj)])

    done = run(emu, tmp_path, str(DEPLOY / "rollback.sh"), str(backup))
    assert done.returncode == 0, done.stdout + done.stderr
    after = snapshot(emu)
    assert sorted(after) == sorted(before), "rollback leaves no object behind, loses none"
    for k, obj in before.items():
        assert comparable(after[k]) == comparable(obj), k


def key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        # A CoreDNS plugin kdns does not have: kdns could not serve this cluster.
        ("    k8s_external example.com\n", "cannot run"),
        # Valid for kdns, but a site's change that deploy/base/Corefile would drop.
        ("    hosts {\n       10.0.0.1 db.example.com\n       fallthrough\n    }\n", "differs"),
    ],
)
def test_preflight_reads_the_live_corefile_and_changes_nothing(
    emu: apiemu.EmulatorThread, tmp_path: Path, extra: str, why: str
) -> None:
    cm = emu.get("v1", "ConfigMap", "coredns", "kube-system")
    assert cm is not None
    corefile = cm["data"]["Corefile"]
    cm["data"]["Corefile"] = corefile.replace("    loadbalance\n", "    loadbalance\n" + extra)
    emu.put(cm)
    before = snapshot(emu)
    writes = len([r for r in emu.requests() if r.method != "GET"])

    done, backup = migrate(emu, tmp_path, "base")
    assert done.returncode == 1, done.stdout + done.stderr
    assert why in done.stderr and "nothing was changed" in done.stderr
    assert snapshot(emu) == before  # resourceVersions included: not one write
    assert len([r for r in emu.requests() if r.method != "GET"]) == writes
    assert (backup / "live.Corefile").read_text() == cm["data"]["Corefile"]


def test_dry_run_backs_up_and_changes_nothing(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    before = snapshot(emu)
    done, backup = migrate(emu, tmp_path, "overlays/autoscaler", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(emu) == before
    created = [o for o in yaml.safe_load_all((backup / "created.yaml").read_text()) if o]
    assert ("apps/v1", "Deployment", "kube-system", "dns-autoscaler") in {key(o) for o in created}
    # Newest first: what the apply adds last is deleted first.
    assert created[0]["kind"] == "NetworkPolicy"


def test_a_backup_directory_is_never_overwritten(
    emu: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    done, _ = migrate(emu, tmp_path, "base", "--dry-run")
    assert done.returncode == 0, done.stderr
    done, _ = migrate(emu, tmp_path, "base")
    assert done.returncode == 2
    assert "already holds a backup" in done.stderr
