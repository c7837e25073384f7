"""The ClusterIP allocator: kube-apiserver's rules for handing out Service addresses.

The rules live in a pure, synchronous core (:mod:`iprange`, :mod:`allocator`,
:mod:`dualstack`, :mod:`repair`) with no I/O, so they can be tested against
hand-computed tables and serve both the local manifests source (:mod:`local`, with
:mod:`store` for sticky addresses) and the cluster-mode webhook (:mod:`admission`).
:mod:`status` reports how full each range is; :mod:`config` reads the ``clusterip``
Corefile directive.

Imports kdns.cluster and kdns.admission only; never the DNS query path, plugins or server.
"""
