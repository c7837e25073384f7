"""The allocator's Leases live in a namespace of kdns's own, not in kube-system.

kube-system holds the controller-manager's and scheduler's election Leases; a Role on
Leases there could touch them. The default comes from the ``clusterip`` directive
(``leases NAMESPACE``), not from the pod's namespace, and deploy/ grants the Role there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.ipam import config
from tests.support import apiemu
from tests.support.envinject import kdns_with_webhooks
from tests.support.process import wait_until

pytestmark = pytest.mark.timeout(60)


def test_default_is_kdns_system() -> None:
    assert config.parse_clusterip([], []).lease_namespace == "kdns-system"
    assert config.DEFAULT_LEASE_NAMESPACE != "kube-system"


def test_leases_option() -> None:
    parsed = config.parse_clusterip(["10.96.0.0/12"], [["leases", "dns-leases"]])
    assert parsed.lease_namespace == "dns-leases"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (["leases"], "exactly one argument"),
        (["leases", "a", "b"], "exactly one argument"),
        (["leases", "Kube_System"], "not a valid namespace name"),
        (["leases", "x" * 64], "not a valid namespace name"),
    ],
)
def test_leases_option_refusals(line: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.parse_clusterip([], [line])


def test_leases_given_twice() -> None:
    with pytest.raises(ValueError, match="given twice"):
        config.parse_clusterip([], [["leases", "a"], ["leases", "b"]])


def test_running_kdns_elects_in_kdns_system(tmp_path: Path) -> None:
    """In kube-system by POD_NAMESPACE, the elected allocator's Lease is still in kdns-system."""
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(apiemu.builders.namespace("kdns-system"))
        proc, _, _ = kdns_with_webhooks(emu, tmp_path)
        try:

            def elected() -> bool:
                proc.alive()
                return (
                    emu.get("coordination.k8s.io/v1", "Lease", "kdns-clusterip", "kdns-system")
                    is not None
                )

            wait_until(elected, timeout=30)
            assert emu.objects("coordination.k8s.io/v1", "Lease", "kube-system") == []
        finally:
            proc.stop()
