"""What a kdns process runs, as typed data: listeners, server blocks, cluster sources.

``kdns serve`` flags and a Corefile both become a :class:`Plan` (:mod:`kdns.server.planner`);
:mod:`kdns.server.lifecycle` runs one. Nothing here starts, opens or imports a runtime
module: the types of the runtime pieces are imported for the type checker only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdns.cluster.kube.config import ConnectionOptions
    from kdns.cluster.kube.informer import Options
    from kdns.cluster.resolver import Settings
    from kdns.envinject.config import EnvInjectConfig
    from kdns.ipam.config import ClusterIPConfig
    from kdns.plugins.tls.setup import TlsConfig
    from kdns.query.chain import Block


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str  # "" for every address
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int = 53) -> ListenAddress:
        """``127.0.0.1:1053``, ``[::1]:53``, ``:53``, ``0.0.0.0`` or a bare port."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
            return cls(host, port)
        if text.count(":") > 1:
            return cls(text, default_port)
        if text.isdigit():
            return cls("", int(text))
        host, sep, port_text = text.partition(":")
        return cls(host, int(port_text) if sep and port_text else default_port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


Task = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class KubeSpec:
    """One cluster source and how its zones answer."""

    settings: Settings
    manifests: str | None = None  # a folder; None means the API server
    api: ConnectionOptions | None = None  # when the source is an API server
    startup_timeout: float = 5.0
    ipam: ClusterIPConfig | None = None  # allocate clusterIPs for the manifests source
    informer: Options | None = None
    snapshot: str | None = None  # persist the last good state here (API source only)


@dataclass(slots=True)
class BlockSpec:
    zones: tuple[str, ...]
    kube: KubeSpec | None = None
    build: Callable[[Block], None] | None = None  # adds hosts/template/forward/...
    fast_ok: bool = True  # no plugin before kubernetes can answer cluster names
    plugins: tuple[str, ...] = ()

    @property
    def loadbalance(self) -> bool:
        return "loadbalance" in self.plugins

    @property
    def loop(self) -> bool:
        return "loop" in self.plugins


@dataclass(slots=True)
class ServerSpec:
    address: ListenAddress
    label: str  # CoreDNS's "server" metric label, e.g. "dns://:53"
    blocks: list[BlockSpec]
    transport: str = "dns"  # "tls" (DoT) and "https" (DoH) too
    tls: TlsConfig | None = None  # the tls directive of the block(s), for tls:// and https://


@dataclass(slots=True)
class WebhookSpec:
    """An HTTPS admission webhook (envinject) reading a cluster's store."""

    kube: KubeSpec
    config: EnvInjectConfig


@dataclass(slots=True)
class Plan:
    servers: list[ServerSpec]
    health: ListenAddress | None = None
    lameduck: float = 0.0
    ready: list[ListenAddress] = field(default_factory=list)
    prometheus: list[ListenAddress] = field(default_factory=list)
    max_udp: int = 1232
    tasks: list[Task] = field(default_factory=list)
    reload: tuple[float, float] | None = None  # (interval, jitter) of the reload plugin
    corefile: str | None = None
    dns_port: int = 53
    fingerprint: str = ""
    webhooks: list[WebhookSpec] = field(default_factory=list)
    debug: ListenAddress | None = None  # debug_endpoints: the cluster inventory
