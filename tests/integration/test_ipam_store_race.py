"""Several kdns processes, one manifests folder, one allocation store: the store arbitrates.

Each worker is a separate OS process running the real local-mode assignment against the
same SQLite file, started together from a barrier, so their claims truly interleave. The
range is a /29 (six usable addresses) and the folder holds ten Services: every address
must be granted exactly once across all processes, every process must agree on who holds
it, and the Services that lose get kube-apiserver's "range is full".
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import pathlib
import random
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.cluster import objects
from kdns.ipam import allocator, config, errors, iprange, local, store
from tests.support.process import KdnsProcess

CIDR = "10.96.0.0/29"
USABLE = {f"10.96.0.{i}" for i in range(1, 7)}
WORKERS = 4
SERVICES = 10

Key = tuple[str, str]


def _service(name: str) -> objects.Service:
    return objects.Service(
        namespace="apps",
        name=name,
        type="ClusterIP",
        cluster_ips=(),
        external_name="",
        ports=(),
        selector=(("app", name),),
        publish_not_ready=False,
        ip_families=(),
        ip_family_policy="",
    )


def _worker(
    path: str,
    seed: int,
    start: multiprocessing.synchronize.Barrier,
    out: multiprocessing.queues.Queue[Any],
) -> None:
    services = [_service(f"s{i}") for i in range(SERVICES)]
    cfg = config.ClusterIPConfig(cidrs=(CIDR,))
    memory = store.Store(path)
    start.wait(timeout=20)
    result = local.assign(cfg, services, memory, random.Random(seed))
    memory.close()
    out.put((result.cluster_ips, result.errors))


def _race(
    path: pathlib.Path, seeds: range
) -> list[tuple[dict[Key, tuple[str, ...]], dict[Key, str]]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(seeds))
    out: multiprocessing.queues.Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(path), s, start, out)) for s in seeds]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
        assert proc.exitcode == 0
    return results


@pytest.mark.parametrize("round_", range(3))
def test_racing_processes_grant_each_address_once(tmp_path: pathlib.Path, round_: int) -> None:
    results = _race(tmp_path / "ipam.db", range(round_ * WORKERS, (round_ + 1) * WORKERS))
    first_ips, first_errors = results[0]
    for ips, errs in results[1:]:
        assert ips == first_ips, "processes disagree on who holds which address"
        assert errs == first_errors
    granted = [ip for got in first_ips.values() for ip in got]
    assert sorted(granted) == sorted(USABLE)  # each usable address exactly once
    assert len(first_errors) == SERVICES - len(USABLE)
    assert all("range is full" in message for message in first_errors.values())
    with store.Store(tmp_path / "ipam.db") as memory:
        assert memory.all() == {key: ips for key, ips in first_ips.items() if ips}


def test_garbage_address_is_invalid_not_out_of_range() -> None:
    """kube-apiserver: `Invalid value: "not-an-ip": must be a valid IP address, ...`."""
    owner = allocator.Allocator(iprange.Range.parse(CIDR))
    with pytest.raises(errors.InvalidAddress) as caught:
        owner.allocate("not-an-ip")
    assert str(caught.value) == (
        'Invalid value: "not-an-ip": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'
    )
    with pytest.raises(errors.NotInRange):
        owner.allocate("fd00::1")  # an address, just not one of this range
    with pytest.raises(errors.NotInRange):
        owner.allocate("10.96.1.1")


def _addresses(server: KdnsProcess) -> dict[str, str]:
    """Service name -> its A record, as one kdns answers over UDP (absent: no address)."""
    found = {}
    for i in range(SERVICES):
        query = dns.message.make_query(f"s{i}.apps.svc.cluster.local.", "A")
        reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
        if reply.rcode() == dns.rcode.NOERROR and reply.answer:
            found[f"s{i}"] = reply.answer[0][0].to_text()
    return found


def test_two_kdns_processes_on_one_folder_and_store_answer_alike(
    kdns_factory: type[KdnsProcess], tmp_path: pathlib.Path
) -> None:
    """End to end: real processes started together answer the same addresses over DNS.

    Their start-up jitter usually serialises the two loads, so this checks agreement;
    the barrier race above is what catches a store that does not arbitrate.
    """
    folder = tmp_path / "cluster"
    folder.mkdir()
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n"]
    docs += [
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: apps}}\n"
        f"spec: {{selector: {{app: s{i}}}, ports: [{{port: 80}}]}}\n"
        for i in range(SERVICES)
    ]
    (folder / "apps.yaml").write_text("---\n".join(docs))
    args = ["--service-cidr", CIDR, "--ipam-store", str(tmp_path / "ipam.db")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both load the folder at once
        first, second = pool.map(lambda _: kdns_factory(folder, args), range(2))
    one, two = _addresses(first), _addresses(second)
    assert one == two
    assert sorted(one.values()) == sorted(USABLE)
    for server in (first, second):
        server.wait_for_log("range is full")
