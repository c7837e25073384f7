"""LIST pages decoded as they arrive (issue 15): items come out one by one whatever the
chunk boundaries, the page's members in any order, and malformed pages are refused as
the whole-page decoder refused them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kdns.cluster.kube import client

PAGE: dict[str, Any] = {
    "kind": "PodList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "123", "continue": "tok\u00e9n"},
    "items": [
        {"metadata": {"name": f"p-{i}", "namespace": "ns\u00e9"}, "status": {"podIP": "10.0.0.1"}}
        for i in range(5)
    ]
    + [1.5e3, "x", None, [], {}],
}


def _read(raw: bytes, size: int) -> tuple[list[Any], dict[str, Any]]:
    reader = client.PageReader()
    items: list[Any] = []
    for start in range(0, len(raw), size):
        items += reader.feed(raw[start : start + size])
    items += reader.feed(b"", final=True)
    return items, reader.members


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 16])
def test_items_whatever_the_chunks(size: int) -> None:
    raw = json.dumps(PAGE, ensure_ascii=False).encode()
    items, members = _read(raw, size)
    assert items == PAGE["items"]
    assert members["metadata"] == PAGE["metadata"] and members["kind"] == "PodList"


def test_members_in_any_order_and_spacing() -> None:
    raw = b' {\n "items" : [ {"a": 1} ,\n{"b": [2, 3]} ] ,\t"metadata":{"continue":""}, "n": 12 }\n'
    for size in (1, 5, len(raw)):
        items, members = _read(raw, size)
        assert items == [{"a": 1}, {"b": [2, 3]}]
        assert members["metadata"] == {"continue": ""} and members["n"] == 12


@pytest.mark.parametrize(
    "raw",
    [b'{"items": null, "metadata": {}}', b'{"metadata": {}}', b'{"items": []}', b"{}"],
)
def test_empty_pages(raw: bytes) -> None:
    assert _read(raw, 3)[0] == []


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2]",
        b'"text"',
        b'{"items": {}}',
        b'{"items": [1, 2}',
        b'{"items": [1], "metadata": [1]}',
        b'{"items": [1]',
        b'{"items": [1]} {"items": []}',
        b'{"items": [{"a": 1,}]}',
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_pages_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        _read(raw, 2)


def test_a_page_is_never_held_whole() -> None:
    """Items are handed over as their bytes complete: what the reader keeps between
    chunks is the unfinished item, not the page."""
    item = {"metadata": {"name": "x" * 100}, "spec": {"containers": [{"image": "y" * 500}]}}
    raw = json.dumps({"metadata": {}, "items": [item] * 2000}).encode()
    reader = client.PageReader()
    count, kept = 0, 0
    for start in range(0, len(raw), 1 << 16):
        count += len(reader.feed(raw[start : start + (1 << 16)]))
        kept = max(kept, len(reader._text) - reader._pos)
    count += len(reader.feed(b"", final=True))
    assert count == 2000
    assert kept < 1000, "only the item cut by the chunk boundary waits"
