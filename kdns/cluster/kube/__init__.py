"""The Kubernetes API source: connection settings, a lean client, informers, snapshots.

``config`` turns the ``kubernetes`` directive's options into a :class:`config.Connection`;
``client`` lists and watches raw JSON over aiohttp; ``informer`` keeps the store equal
to the cluster; ``snapshot`` persists the last good state for restarts during outages;
``metrics`` holds what they export.

Imports kdns.cluster (objects, shrink, store) and kdns.dns only; never the query path or server.
"""

from kdns.cluster.kube import client, config, informer, metrics, snapshot

__all__ = ["client", "config", "informer", "metrics", "snapshot"]
