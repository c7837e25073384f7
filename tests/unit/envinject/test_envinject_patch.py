"""JSONPatch building: applied with the jsonpatch library, compared with pods written
out by hand."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from kdns.envinject import envvars, patch

VARS = [envvars.EnvVar("A_SERVICE_HOST", "10.0.0.1"), envvars.EnvVar("A_SERVICE_PORT", "80")]
A_HOST = {"name": "A_SERVICE_HOST", "value": "10.0.0.1"}
A_PORT = {"name": "A_SERVICE_PORT", "value": "80"}


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def applied(before: dict[str, Any]) -> dict[str, Any]:
    ops = patch.build(before, VARS)
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(before), ops)
    # A second run over the result must find nothing to do (reinvocationPolicy IfNeeded).
    assert patch.build(result, VARS) == []
    return result


def test_container_without_env_gets_the_list() -> None:
    after = applied(pod(containers=[{"name": "c", "image": "i"}]))
    assert after["spec"]["containers"] == [{"name": "c", "image": "i", "env": [A_HOST, A_PORT]}]


def test_null_env_is_replaced() -> None:
    after = applied(pod(containers=[{"name": "c", "env": None}]))
    assert after["spec"]["containers"][0]["env"] == [A_HOST, A_PORT]


def test_injected_entries_go_before_the_containers_own() -> None:
    own = [{"name": "URL", "value": "http://$(A_SERVICE_HOST)/"}, {"name": "X", "value": "1"}]
    after = applied(pod(containers=[{"name": "c", "env": copy.deepcopy(own)}]))
    assert after["spec"]["containers"][0]["env"] == [A_HOST, A_PORT, *own]


def test_declared_names_are_never_touched() -> None:
    own = [
        {"name": "X", "value": "1"},
        {"name": "A_SERVICE_HOST", "value": "mine"},
        {"name": "A_SERVICE_PORT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    before = pod(containers=[{"name": "c", "env": copy.deepcopy(own)}])
    assert patch.build(before, VARS) == []


def test_partly_declared_adds_the_rest() -> None:
    own = [{"name": "A_SERVICE_PORT", "value": "8080"}]
    after = applied(pod(containers=[{"name": "c", "env": copy.deepcopy(own)}]))
    assert after["spec"]["containers"][0]["env"] == [A_HOST, *own]


def test_init_containers_patched_ephemeral_left_alone() -> None:
    before = pod(
        initContainers=[{"name": "init"}],
        containers=[{"name": "a"}, {"name": "b", "env": [{"name": "X", "value": "1"}]}],
        ephemeralContainers=[{"name": "debug"}],
    )
    after = applied(before)
    assert after["spec"] == {
        "initContainers": [{"name": "init", "env": [A_HOST, A_PORT]}],
        "containers": [
            {"name": "a", "env": [A_HOST, A_PORT]},
            {"name": "b", "env": [A_HOST, A_PORT, {"name": "X", "value": "1"}]},
        ],
        "ephemeralContainers": [{"name": "debug"}],
    }


def test_no_variables_no_ops() -> None:
    assert patch.build(pod(containers=[{"name": "c"}]), []) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "Pod"},
        pod(),
        pod(containers=[]),
        pod(containers="c"),
        pod(containers=["c"]),
        pod(containers=[{"name": "c", "env": "X=1"}]),
        pod(initContainers=[{"name": "i"}]),
    ],
)
def test_pods_that_cannot_be_patched(bad: dict[str, Any]) -> None:
    with pytest.raises(patch.PodShapeError):
        patch.build(bad, VARS)
