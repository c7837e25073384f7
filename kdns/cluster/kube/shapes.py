"""What kdns reads of each listed and watched kind, as msgspec types: the JSON decoder
builds only these fields and skips everything else (a Pod's spec, its conditions, the
managed fields) without making an object of it.

A decoded item is handed on as a plain dict holding only those fields, so the
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
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import UNSET, Struct, UnsetType

S = TypeVar("S", bound=Struct)
Raw = dict[str, Any]


class Meta(Struct):
    """``metadata``: what the informer keys, filters and resumes by, and the labels.

    Fields are named as the API names them (camelCase), so the dicts built from them
    read as the API's objects do."""

    name: Any = UNSET
    namespace: Any = UNSET
    resourceVersion: Any = UNSET
    labels: Any = UNSET


class SliceMeta(Meta):
    annotations: Any = UNSET  # the controller's last-change-trigger-time


class PodMeta(Meta):
    deletionTimestamp: Any = UNSET


class Namespace(Struct):
    metadata: Meta


class ServiceSpec(Struct):
    type: Any = UNSET
    clusterIP: Any = UNSET
    clusterIPs: Any = UNSET
    externalName: Any = UNSET
    ports: Any = UNSET
    selector: Any = UNSET
    publishNotReadyAddresses: Any = UNSET
    ipFamilies: Any = UNSET
    ipFamilyPolicy: Any = UNSET


class Service(Struct):
    metadata: Meta
    spec: ServiceSpec | UnsetType | None = UNSET


class TargetRef(Struct):
    kind: Any = UNSET
    name: Any = UNSET


class Endpoint(Struct):
    addresses: Any = UNSET
    conditions: Any = UNSET
    hostname: Any = UNSET
    targetRef: TargetRef | UnsetType | None = UNSET
    nodeName: Any = UNSET
    zone: Any = UNSET


class EndpointSlice(Struct):
    metadata: SliceMeta
    addressType: Any = UNSET
    endpoints: list[Endpoint] | UnsetType | None = UNSET
    ports: Any = UNSET


class PodAddressStatus(Struct):
    podIP: Any = UNSET
    podIPs: Any = UNSET


class PodAddress(Struct):
    """``pods verified``: a Pod's name, namespace and addresses, nothing else."""

    metadata: Meta
    status: PodAddressStatus | UnsetType | None = UNSET


class PodSpec(Struct):
    hostname: Any = UNSET
    subdomain: Any = UNSET
    nodeName: Any = UNSET
    containers: Any = UNSET


class PodStatus(PodAddressStatus):
    conditions: Any = UNSET
    phase: Any = UNSET


class Pod(Struct):
    metadata: PodMeta
    spec: PodSpec | UnsetType | None = UNSET
    status: PodStatus | UnsetType | None = UNSET


class ImportSpec(Struct):
    type: Any = UNSET
    ips: Any = UNSET
    ports: Any = UNSET


class ServiceImport(Struct):
    metadata: Meta
    spec: ImportSpec | UnsetType | None = UNSET


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

    def __init__(self, shape: type[Struct]) -> None:
        self.shape = shape
        self._item = msgspec.json.Decoder(shape)
        self._page = msgspec.json.Decoder(Page[shape])  # type: ignore[valid-type]
        self._raw_page = msgspec.json.Decoder(Page[msgspec.Raw])  # type: ignore[type-var]
        self._event = msgspec.json.Decoder(Event[shape])  # type: ignore[valid-type]

    def item(self, data: bytes | memoryview | msgspec.Raw) -> Any:
        """One item: its fields as a dict, or (refused) the whole JSON value;
        raises ValueError when it is not JSON at all."""
        try:
            return msgspec.to_builtins(self._item.decode(data))
        except msgspec.MsgspecError:
            return json.loads(bytes(data))

    def page(self, body: bytes) -> tuple[list[Any], Raw] | None:
        """A whole LIST page: its items (as :meth:`item` gives them) and its
        ``metadata``; None when the page itself is not one msgspec reads."""
        try:
            page = self._page.decode(body)
            return [msgspec.to_builtins(i) for i in page.items or ()], page.metadata or {}
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
        return event.type, msgspec.to_builtins(event.object)
