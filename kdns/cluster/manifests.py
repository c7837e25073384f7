"""The embedded source: a folder of Kubernetes YAML/JSON instead of an API server.

Every ``*.yaml``, ``*.yml`` and ``*.json`` under the folder is read (multi-document
files and ``kind: List`` included) and watched by polling its stat signature, which
works the same on every filesystem, ConfigMap volumes and editors that replace files
included. What a file holds is kept per file, so a file that stops parsing (half
written, a typo) keeps serving its last good version, and an invalid object keeps its
last good version too; each problem is reported with its file and document index.
The folder is then turned into what a cluster's controllers would have made of it:
Endpoints mirrored into EndpointSlices, Pods selected into EndpointSlices, and the
namespaces every object lives in, before the state is written to the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdns import errors as kdns_errors
from kdns.cluster import objects, podslices, shrink
from kdns.cluster.store import Store

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"

Key = tuple[str, str, str]  # (kind, namespace, name)
Shrunk = (
    objects.Service | objects.EndpointSlice | objects.Namespace | objects.Pod
    | objects.ServiceImport
)  # fmt: skip
Entry = Shrunk | tuple[objects.EndpointSlice, ...]  # Endpoints mirror into several slices
Signature = tuple[int, int, int]
AssignIPs = Callable[[Sequence[objects.Service]], Sequence[objects.Service]]


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    document: str  # "3", or "3.1" for the second item of a List in the fourth document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: document {self.document}: {self.message}"


@dataclass(slots=True)
class _File:
    signature: Signature
    entries: dict[Key, Entry] = field(default_factory=dict)
    skip_mirror: set[str] = field(default_factory=set)


class _YamlError(kdns_errors.SourceError):
    """A YAML document that does not parse (yaml.YAMLError's message)."""


def _documents(path: Path, text: str) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(text)]
    import yaml  # here: a server without manifests never loads PyYAML

    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        raise _YamlError(str(exc)) from exc


def _items(docs: list[Any]) -> Iterator[tuple[str, Any]]:
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if (isinstance(doc, Mapping) and doc.get("kind") == "List") or (
            isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List")
        ):
            for j, item in enumerate(doc.get("items") or []):
                yield f"{i}.{j}", item
        else:
            yield str(i), doc


def _identity(raw: Mapping[str, Any]) -> Key | None:
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    kind = str(raw.get("kind"))
    ns = "" if kind == "Namespace" else str(meta.get("namespace") or "default")
    return (kind, ns, meta["name"])


def _shrink(raw: Mapping[str, Any]) -> Entry | None:
    kind = raw.get("kind")
    api = str(raw.get("apiVersion", ""))
    if kind == "Service" and api == "v1":
        return shrink.service(raw)
    if kind == "EndpointSlice" and api.startswith("discovery.k8s.io/"):
        return shrink.endpoint_slice(raw)
    if kind == "Endpoints" and api == "v1":
        return tuple(shrink.endpoints_to_slices(raw))
    if kind == "Pod" and api == "v1":
        return shrink.pod(raw)
    if kind == "Namespace" and api == "v1":
        return shrink.namespace(raw)
    if kind == "ServiceImport" and api.startswith("multicluster.x-k8s.io/"):
        return shrink.service_import(raw)
    return None  # other kinds (Deployments, ConfigMaps...) are not DNS's business


class ManifestsSource:
    """Loads and watches a folder into a :class:`Store`; see the module docstring."""

    def __init__(
        self, directory: str | os.PathLike[str], store: Store, assign_ips: AssignIPs | None = None
    ) -> None:
        self.directory = Path(directory)
        self.store = store
        self.assign_ips = assign_ips
        self.files: dict[Path, _File] = {}
        self.problems: list[Problem] = []
        self._file_problems: dict[Path, list[Problem]] = {}
        self._scan_errors: set[str] = set()
        self._loaded = False

    # -- scanning ------------------------------------------------------------------

    def scan(self) -> dict[Path, Signature]:
        """The signature of every manifest file, read from disk.

        A folder or file that cannot be read (EMFILE, EACCES, EIO, the folder itself
        gone) is not an empty one: what was known below it keeps its last signature, so
        its objects keep answering. Only an entry that vanished between listing and
        reading (ENOENT below the root) counts as removed.
        """
        found: dict[Path, Signature] = {}
        unreadable: list[tuple[Path, OSError]] = []
        stack = [self.directory]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                if folder == self.directory or not _vanished(exc):
                    unreadable.append((folder, exc))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # hidden files, editor swap files, ConfigMap's ..data
                path = Path(entry.path)
                try:
                    if entry.is_dir():
                        stack.append(path)
                    elif entry.name.endswith(SUFFIXES):
                        st = entry.stat()
                        found[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
                except OSError as exc:
                    if not _vanished(exc):
                        unreadable.append((path, exc))
        self._keep_unreadable(found, unreadable)
        return found

    def _keep_unreadable(
        self, found: dict[Path, Signature], unreadable: list[tuple[Path, OSError]]
    ) -> None:
        """Carry the known files below each unreadable path over; say so once per error."""
        for path, _ in unreadable:
            for known, state in self.files.items():
                if known == path or path in known.parents:
                    found.setdefault(known, state.signature)
        errors = {f"{path}: {exc.strerror or exc}" for path, exc in unreadable}
        for message in sorted(errors - self._scan_errors):
            log.warning("manifests: cannot read %s, keeping the last good state", message)
        if self._scan_errors and not errors:
            log.info("manifests: %s is readable again", self.directory)
        self._scan_errors = errors

    def load(self) -> bool:
        """Read what changed on disk and bring the store up to date; True if it changed.

        A missing folder is an error at the first load only; later it is a folder that
        cannot be read, which keeps the last good state (see :meth:`scan`).
        """
        if not self._loaded and not self.directory.is_dir():
            raise FileNotFoundError(f"manifests folder {self.directory} does not exist")
        current = self.scan()
        changed = False
        for path in [p for p in self.files if p not in current]:
            del self.files[path]
            self._file_problems.pop(path, None)
            changed = True
        for path, signature in current.items():
            known = self.files.get(path)
            if known is not None and known.signature == signature:
                continue
            changed = self._read(path, signature) or changed
        if changed or not self.store.synced:
            self.problems = [p for probs in self._file_problems.values() for p in probs]
            self._publish()
        self._loaded = True
        return changed

    def _read(self, path: Path, signature: Signature) -> bool:
        """Parse one changed file; False when it could not be read and nothing changed."""
        rel = str(path)
        previous = self.files.get(path)
        problems: list[Problem] = []
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            # Unreadable is not empty, and maybe not for long (EMFILE): keep the last good
            # version and its old signature, so the next pass reads the file again.
            self._unreadable_file(path, exc)
            return False
        try:
            docs = _documents(path, text)
        except (UnicodeDecodeError, _YamlError, json.JSONDecodeError) as exc:
            reason = str(exc).replace("\n", " ")
            problems.append(
                Problem(rel, "-", f"cannot parse, keeping the last good version: {reason}")
            )
            for p in problems:
                log.warning("%s", p)
            self._file_problems[path] = problems
            if previous is not None:
                previous.signature = signature
            else:
                self.files[path] = _File(signature)
            return True
        fresh = _File(signature)
        for index, raw in _items(docs):
            if not isinstance(raw, Mapping):
                problems.append(Problem(rel, index, "not a Kubernetes object"))
                continue
            key = _identity(raw)
            try:
                entry = _shrink(raw)
            except shrink.Invalid as exc:
                kept = previous.entries.get(key) if previous is not None and key else None
                note = ", keeping its last good version" if kept is not None else ", skipped"
                problems.append(Problem(rel, index, f"{raw.get('kind')} {_show(key)}: {exc}{note}"))
                if kept is not None and key is not None:
                    fresh.entries[key] = kept
                continue
            if entry is None or key is None:
                continue
            if key in fresh.entries:
                problems.append(Problem(rel, index, f"{key[0]} {_show(key)} defined twice"))
            fresh.entries[key] = entry
            labels = raw.get("metadata", {}).get("labels") or {}
            if key[0] == "Endpoints" and str(labels.get(SKIP_MIRROR_LABEL)) == "true":
                fresh.skip_mirror.add(f"{key[1]}/{key[2]}")
        for p in problems:
            log.warning("%s", p)
        self._file_problems[path] = problems
        self.files[path] = fresh
        return True

    def _unreadable_file(self, path: Path, exc: OSError) -> None:
        """Report a file that cannot be read, once until the reason changes."""
        problem = Problem(
            str(path), "-", f"cannot read, keeping the last good version: {exc.strerror or exc}"
        )
        if self._file_problems.get(path) != [problem]:
            log.warning("%s", problem)
            self._file_problems[path] = [problem]

    # -- turning the folder into cluster state -------------------------------------

    def _publish(self) -> None:
        services: dict[tuple[str, str], objects.Service] = {}
        slices: dict[tuple[str, str], objects.EndpointSlice] = {}
        endpoints: dict[tuple[str, str], tuple[objects.EndpointSlice, ...]] = {}
        namespaces: dict[str, objects.Namespace] = {}
        pods: dict[tuple[str, str], objects.Pod] = {}
        imports: dict[tuple[str, str], objects.ServiceImport] = {}
        skip_mirror: set[str] = set()
        for path in sorted(self.files):
            state = self.files[path]
            skip_mirror |= state.skip_mirror
            for (_, ns, name), entry in state.entries.items():
                if isinstance(entry, tuple):
                    endpoints[(ns, name)] = entry
                elif isinstance(entry, objects.Service):
                    services[entry.key] = entry
                elif isinstance(entry, objects.EndpointSlice):
                    slices[entry.key] = entry
                elif isinstance(entry, objects.Pod):
                    pods[entry.key] = entry
                elif isinstance(entry, objects.ServiceImport):
                    imports[entry.key] = entry
                else:
                    namespaces[entry.name] = entry
        if self.assign_ips is not None:
            assigned = self.assign_ips(list(services.values()))
            services = {svc.key: svc for svc in assigned}
        with_slices = {(eps.namespace, eps.service) for eps in slices.values()}
        for key, mirrored in endpoints.items():
            svc = services.get(key)
            if f"{key[0]}/{key[1]}" in skip_mirror or key in with_slices:
                continue
            if svc is not None and svc.selector is not None:
                continue  # the mirroring controller leaves selector services alone
            for eps in mirrored:
                slices[eps.key] = eps
        by_ns: dict[str, list[objects.Pod]] = {}
        for pod in pods.values():
            by_ns.setdefault(pod.namespace, []).append(pod)
        for svc in services.values():
            if svc.key in with_slices or svc.selector is None:
                continue
            for eps in podslices.slices_for(svc, by_ns.get(svc.namespace, ())):
                slices[eps.key] = eps
        for ns in (
            *BUILTIN_NAMESPACES,
            *(k[0] for k in services),
            *(k[0] for k in slices),
            *(k[0] for k in pods),
        ):
            namespaces.setdefault(ns, objects.Namespace(ns))
        self.store.replace(
            services=services.values(),
            slices=slices.values(),
            namespaces=namespaces.values(),
            pods=pods.values(),
            imports=imports.values(),
        )
        self.store.mark_synced()

    async def watch(self, interval: float = 0.25) -> None:
        """Poll the folder forever; a failing pass is logged and retried, never fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.load()
            except Exception:
                log.exception("reloading manifests from %s failed", self.directory)


def _vanished(exc: OSError) -> bool:
    """Removed between being listed and being read: a deletion, not a read failure."""
    return isinstance(exc, (FileNotFoundError, NotADirectoryError))


def _show(key: Key | None) -> str:
    if key is None:
        return "(no name)"
    return f"{key[1]}/{key[2]}" if key[1] else key[2]
