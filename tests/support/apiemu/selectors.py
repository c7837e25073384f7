"""Label and field selectors with the apiserver's grammar and its refusals.

kdns narrows its informers with ``labels`` and ``namespace_labels`` (CoreDNS options),
so the emulator must apply selectors exactly, set-based operators included, and
reject the field selectors the real server rejects: a client that relies on an
unsupported field label must fail here as it would in a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import status

_SET_OP = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_OP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")

Requirement = Callable[[Mapping[str, str]], bool]


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``a in (x,y),b`` has two requirements."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(term: str) -> Requirement:
    eq = _EQ_OP.match(term)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _SET_OP.match(term)
    if not match:
        raise status.bad_request(f"unable to parse requirement: {term!r}")
    negated, key, op, values_text = match.groups()
    if op and negated:
        raise status.bad_request(f"unable to parse requirement: {term!r}")
    if op:
        values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if negated:
        return lambda labels: key not in labels
    return lambda labels: key in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        return cls(tuple(_requirement(term) for term in _split_top_level(text or "")))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...]
    """(field path, wanted equal, value) triples."""

    @classmethod
    def parse(cls, text: str | None, allowed: frozenset[str]) -> FieldSelector:
        terms = []
        for term in _split_top_level(text or ""):
            match = _EQ_OP.match(term)
            if not match:
                raise status.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
            path, op, value = match.groups()
            if path not in allowed:
                raise status.bad_request(f"field label not supported: {path}")
            terms.append((path, op != "!=", value))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) == equal for path, equal, value in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


@dataclass(frozen=True, slots=True)
class Filter:
    """Everything that decides whether one object belongs in a list or a watch."""

    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)

    @property
    def selects_all(self) -> bool:
        return self.labels.empty and self.fields.empty
