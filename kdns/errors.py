"""Every exception kdns raises on purpose descends from :class:`KdnsError`.

Four families below it say where a failure comes from; each module's own classes (with
a docstring that is the message) subclass one of them. Exceptions become rcodes, HTTP
statuses or exit codes only at the edges (the query handler, the webhooks, the cli).
This module imports nothing.
"""

from __future__ import annotations


class KdnsError(Exception):
    """The root of kdns's own exceptions."""


class ConfigurationError(KdnsError):
    """A Corefile, flag, kubeconfig or directive that kdns cannot run."""


class SourceError(KdnsError):
    """A cluster source failed: the API server, a manifests folder, a snapshot on disk."""


class ProtocolError(KdnsError):
    """A DNS message or name that is not what the wire format allows."""


class WebhookError(KdnsError):
    """An admission request kdns cannot answer as asked."""


class AllocatorError(KdnsError):
    """The ClusterIP allocator refused or failed an allocation."""
