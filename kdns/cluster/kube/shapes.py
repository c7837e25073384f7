"""What kdns reads of each listed and watched kind, as msgspec types: the JSON decoder
builds only these fields and skips everything else (a Pod's spec, its conditions, the
managed fields) without making an object of it.

A decoded item is a plain dict holding only those fields, so the
shrinkers (:mod:`kdns.cluster.shrink`) and the informer read it exactly as they read a
whole object and keep their validation to the letter. Every field the shrinkers check
is typed ``Any`` here: the shrinker, not the decoder, judges its value. Only the maps
on the way to those fields are typed; when one is not a map (or the item is not a
JSON object, or holds anything msgspec refuses, NaN say), :class:`Reader` decodes the
item again with :mod:`json`, whole, and the shrinker sees what it always saw. So the
fast path changes what is built, never what is served or refused.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypedDict, TypeVar

import msgspec
from msgspec import Struct

S = TypeVar("S")
Raw = dict[str, Any]

# TypedDicts: msgspec decodes them straight to plain dicts holding only these keys
# (total=False: a key absent from the JSON is absent from the dict).


class Key(TypedDict, total=False):
    """``metadata``: what the informer keys, filters and resumes by.

    Keys are named as the API names them (camelCase): the dicts read as its objects."""

    name: Any
    namespace: Any
    resourceVersion: Any


class Meta(Key, total=False):
    labels: Any


class SliceMeta(Meta, total=False):
    annotations: Any  # the controller's last-change-trigger-time


class PodMeta(Meta, total=False):
    deletionTimestamp: Any


class Namespace(TypedDict):
    metadata: Meta


class ServiceSpec(TypedDict, total=False):
    type: Any
    clusterIP: Any
    clusterIPs: Any
    externalName: Any
    ports: Any
    selector: Any
    publishNotReadyAddresses: Any
    ipFamilies: Any
    ipFamilyPolicy: Any


class Service(Namespace, total=False):
    spec: ServiceSpec | None


class TargetRef(TypedDict, total=False):
    kind: Any
    name: Any


class Endpoint(TypedDict, total=False):
    addresses: Any
    conditions: Any
    hostname: Any
    targetRef: TargetRef | None
    nodeName: Any
    zone: Any


class _Slice(TypedDict):
    metadata: SliceMeta


class EndpointSlice(_Slice, total=False):
    addressType: Any
    endpoints: list[Endpoint] | None
    ports: Any


class PodAddressStatus(TypedDict, total=False):
    podIP: Any
    podIPs: Any


class _PodAddress(TypedDict):
    metadata: Key


class PodAddress(_PodAddress, total=False):
    """``pods verified``: a Pod's name, namespace and addresses, nothing else."""

    status: PodAddressStatus | None


class PodSpec(TypedDict, total=False):
    hostname: Any
    subdomain: Any
    nodeName: Any
    containers: Any


class PodStatus(PodAddressStatus, total=False):
    conditions: Any
    phase: Any


class _Pod(TypedDict):
    metadata: PodMeta


class Pod(_Pod, total=False):
    spec: PodSpec | None
    status: PodStatus | None


class ImportSpec(TypedDict, total=False):
    type: Any
    ips: Any
    ports: Any


class ServiceImport(Namespace, total=False):
    spec: ImportSpec | None


class Page(Struct, Generic[S]):
    """A LIST response as kdns reads it; ``metadata`` is the list's (continue, version)."""

    items: list[S] | None = None
    metadata: dict[str, Any] | None = None


class Event(Struct, Generic[S]):
    """One line of a watch stream."""

    type: str
    object: S


class Reader:
    """Decodes one kind's pages, items and watch lines to dicts of the fields it reads.

    :meth:`page` and :meth:`event` return None when the fast decoder refused the data;
    the caller then decodes it the slow way (whole, with :mod:`json`), which decides
    what is malformed exactly as before.
    """

    def __init__(self, shape: type[Any]) -> None:
        self.shape = shape
        self._item = msgspec.json.Decoder(shape)
        self._page = msgspec.json.Decoder(Page[shape])  # type: ignore[valid-type]
        self._raw_page = msgspec.json.Decoder(Page[msgspec.Raw])
        self._event = msgspec.json.Decoder(Event[shape])  # type: ignore[valid-type]

    def item(self, data: bytes | memoryview | msgspec.Raw) -> Any:
        """One item: its fields as a dict, or (refused) the whole JSON value;
        raises ValueError when it is not JSON at all."""
        try:
            return self._item.decode(data)
        except msgspec.MsgspecError:
            return json.loads(bytes(data))

    def page(self, body: bytes) -> tuple[list[Any], Raw] | None:
        """A whole LIST page: its items (as :meth:`item` gives them) and its
        ``metadata``; None when the page itself is not one msgspec reads."""
        try:
            page = self._page.decode(body)
            return page.items or [], page.metadata or {}
        except msgspec.MsgspecError:
            pass
        try:  # one malformed item: decode the others fast, that one whole
            raw_page = self._raw_page.decode(body)
            items = [self.item(raw) for raw in raw_page.items or ()]
        except (msgspec.MsgspecError, ValueError, RecursionError):
            return None
        return items, raw_page.metadata or {}

    def event(self, line: bytes) -> tuple[str, Any] | None:
        """A watch line's (type, object); None when it must be read whole (an ERROR
        event, whose object is a Status, or anything msgspec refuses)."""
        try:
            event = self._event.decode(line)
        except msgspec.MsgspecError:
            return None
        if event.type == "ERROR":
            return None
        return event.type, event.object
