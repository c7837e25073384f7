"""An :class:`Explanation` for people (:func:`render`) and for scripts (:func:`to_json`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from kdns.explain.model import (
    FORWARDED,
    NODATA,
    Explanation,
    Query,
    ServiceInfo,
)


def to_dict(exp: Explanation) -> dict[str, Any]:
    return dataclasses.asdict(exp)


def to_json(exp: Explanation) -> str:
    return json.dumps(to_dict(exp), indent=2, sort_keys=False) + "\n"


def _query_line(query: Query) -> str:
    if query.outcome == FORWARDED:
        return f"{query.qname} {query.qtype}: forwarded upstream"
    text = f"{query.qname} {query.qtype}: {query.rcode}"
    if query.outcome == NODATA:
        text += " (no records)"
    elif query.answers:
        text += " " + ", ".join(r.data for r in query.answers)
    return text


def _service_lines(info: ServiceInfo) -> list[str]:
    if info.type == "ExternalName":
        return [f"Service {info.namespace}/{info.name}: ExternalName -> {info.external_name}"]
    address = "headless" if info.headless else ", ".join(info.cluster_ips) or "no clusterIP"
    ports = ", ".join(
        f"{p.name + ' ' if p.name else ''}{p.port}/{p.protocol}->{p.target_port}"
        for p in info.ports
    )
    selector = "none" if info.selector is None else format_selector(info.selector)
    out = [
        f"Service {info.namespace}/{info.name}: {info.type} {address}",
        f"  ports {ports or 'none'}; selector {selector}"
        + ("; publishNotReadyAddresses" if info.publish_not_ready else ""),
    ]
    if not info.slices:
        out.append("  no EndpointSlices")
    for eps in info.slices:
        ready = sum(e.ready for e in eps.endpoints)
        out.append(
            f"  EndpointSlice {eps.name} ({eps.address_type}):"
            f" {ready} ready, {len(eps.endpoints) - ready} not ready"
        )
        for e in eps.endpoints:
            state = "ready    " if e.ready else "not ready"
            extra = f" pod {e.pod}" if e.pod else ""
            if info.headless:
                extra += f" as {e.dns_label}" + ("" if e.in_dns else " (not in DNS)")
            if e.reason:
                extra += f" ({e.reason})"
            out.append(f"    {state} {', '.join(e.addresses)}{extra}")
    return out


def render(exp: Explanation) -> str:
    """The short text for people: the result, the path to it, the Service, the findings."""
    if exp.resolves:
        verdict = "resolves"
    elif exp.result.outcome == FORWARDED:
        verdict = "not a cluster name: forwarded upstream"
    else:
        verdict = f"does not resolve ({exp.result.outcome})"
    out = [f"{exp.name} {exp.qtype}: {verdict}"]
    if exp.search is not None:
        sp = exp.search
        out.append(
            f"from a pod in {sp.namespace} (search {' '.join(sp.search)}; ndots:{sp.ndots}):"
        )
        for i, query in enumerate(sp.queries):
            mark = "=>" if i == sp.winner else "  "
            out.append(f" {mark} {i + 1}. {_query_line(query)}")
    else:
        out.append("  " + _query_line(exp.result))
    for record in exp.result.answers:
        out.append(f"    {record.text}")
    if exp.service is not None:
        out.extend(_service_lines(exp.service))
    sel = exp.selector
    if sel is not None and sel.pods_known:
        out.append(
            f"  selector matches {len(sel.matching)} of {sel.pods_in_namespace} pod(s) in"
            f" {exp.service.namespace if exp.service else '?'}, {len(sel.matching_ready)} ready"
        )
    for finding in exp.findings:
        out.append(("! " if finding.problem else "- ") + finding.message)
    for suggestion in exp.suggestions:
        out.append(f"? did you mean {suggestion}")
    return "\n".join(out) + "\n"


def format_selector(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "(empty)"
