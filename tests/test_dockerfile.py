"""The Dockerfile, without a container engine: its structure, and its install steps for real.

No Docker daemon runs on these machines, so the image is never built here. What can break
silently is checked instead: the base is pinned, the image runs as non-root, the
entrypoint, command, exposed ports and image name agree with deploy/, the build context
(.dockerignore) holds what the COPY lines need, and the build stage's RUN lines are
executed in a fresh virtual environment from exactly the files they copy, ending with
`kdns -version` from that venv.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kdns

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
KUBECTL = "/usr/bin/kubectl"
BASE_IMAGE = re.compile(
    r"python:(?P<version>3\.11\.\d+)-slim-bookworm(@sha256:[0-9a-f]{64})?"
)  # an exact patch release, optionally by digest too
NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
)


# -- a small Dockerfile reader -------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    stages: list[Stage]
    comments: list[str]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found


@functools.cache
def dockerfile() -> Dockerfile:
    """Instructions with continuation lines joined, grouped by stage; comments kept apart."""
    stages: list[Stage] = []
    comments: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        if not stripped and not pending:
            continue
        pending += " " + stripped.removesuffix("\\").strip() if pending else stripped
        if stripped.endswith("\\"):
            pending = pending.removesuffix("\\")
            continue
        keyword, _, args = pending.partition(" ")
        keyword, args, pending = keyword.upper(), args.strip(), ""
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert m, args
            stages.append(Stage(m[1], m[2] or str(len(stages))))
        elif keyword != "ARG" or stages:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(stages, comments)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


# -- structure -----------------------------------------------------------------------------


def test_base_images_are_pinned() -> None:
    df = dockerfile()
    assert len(df.stages) >= 2, "multi-stage: the build tools stay out of the image"
    names = set()
    for stage in df.stages:
        if stage.image not in names:
            m = BASE_IMAGE.fullmatch(stage.image)
            assert m, f"unpinned or unexpected base image {stage.image!r}"
            requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "requires-python"
            ]
            assert requires == ">=3.11" and m["version"].startswith("3.11.")
        names.add(stage.name)


def test_runtime_runs_as_non_root() -> None:
    runtime = dockerfile().stages[-1]
    users = runtime.all("USER")
    assert users, "the image must not run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0")
    assert user.isdigit(), "numeric, so runAsNonRoot can verify it"
    last_user = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in runtime.instructions[last_user:])
    # deploy/ runs as the same uid.
    deployment = _deployment()
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)


def test_entrypoint_and_command_match_deploy() -> None:
    runtime = dockerfile().stages[-1]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert exec_form(entrypoint) == ["kdns"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kdns"] == "kdns.cli:main"
    command = exec_form(cmd)
    assert command == ["-conf", "/etc/coredns/Corefile"]

    spec = _deployment()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container.get("args", command) == command
    assert "command" not in container, "the image's ENTRYPOINT is kdns"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    conf_dir = str(Path(command[1]).parent)
    (volume,) = [v for v in spec["volumes"] if v["name"] == mounts[conf_dir]]
    assert Path(command[1]).name in [i["path"] for i in volume["configMap"]["items"]]


def test_exposed_ports_match_the_deployment() -> None:
    runtime = dockerfile().stages[-1]
    exposed = set()
    for args in runtime.all("EXPOSE"):
        for port in args.split():
            number, _, protocol = port.partition("/")
            exposed.add((int(number), (protocol or "tcp").upper()))
    assert exposed == {(53, "UDP"), (53, "TCP"), (8080, "TCP"), (8181, "TCP"), (9153, "TCP")}
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    declared = {(p["containerPort"], p.get("protocol", "TCP")) for p in container["ports"]}
    assert exposed == declared


def test_no_healthcheck_and_the_reason_is_written() -> None:
    df = dockerfile()
    assert all(not s.all("HEALTHCHECK") for s in df.stages)
    assert any("HEALTHCHECK" in c and "probe" in c for c in df.comments), (
        "say why: Kubernetes probes own health"
    )


def test_images_in_deploy_are_this_version() -> None:
    """deploy/ runs the image this tree builds (`docker build -t kdns:<version> .`)."""
    for target in ("base", "overlays/nodelocal"):
        docs = _render(target)
        for doc in docs:
            if doc["kind"] not in ("Deployment", "DaemonSet"):
                continue
            spec = doc["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                name, _, tag = c["image"].rpartition(":")
                assert name in ("kdns", "kdns-netsetup") and tag == kdns.__version__, c["image"]
    targets = {s.name for s in dockerfile().stages}
    assert "netsetup" in targets, "kdns-netsetup is `docker build --target netsetup`"


def test_dependencies_are_installed_with_constraints() -> None:
    build = _build_stage()
    (install,) = [r for r in build.all("RUN") if "pip install" in r]
    words = shlex.split(install)
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert words[-1] == "."


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_build_context_holds_what_copy_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = _copy_sources()
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files, source
        for f in files:
            relative = f.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not _ignored(relative, patterns), f"{relative} is left out of the context"
    for heavy in (".venv", "tests/test_deploy.py", ".git", "benchmarks/gen_cluster.py"):
        assert _ignored(heavy, patterns), f"{heavy} should stay out of the build context"
    assert _ignored("kdns/__pycache__/cli.cpython-311.pyc", patterns)


# -- the install steps, for real -----------------------------------------------------------


def test_install_steps_run_in_a_fresh_venv(tmp_path: Path) -> None:
    """The build stage's RUN lines, from a context holding only what its COPY lines copy.

    Two liberties, for speed only: the venv is made without its own pip (the test's pip
    installs into it with --python), and bytecode is not compiled (the image compiles it).
    """
    context = tmp_path / "src"
    context.mkdir()
    for source in _copy_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    venv = tmp_path / "venv"
    runs = _build_stage().all("RUN")
    assert len(runs) == 2, f"teach this test the new RUN step(s): {runs}"
    assert shlex.split(runs[0]) == ["python", "-m", "venv", "$VIRTUAL_ENV"]
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)

    words = shlex.split(runs[1])
    assert words[:2] == ["pip", "install"]
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    tuning = ["--no-compile", "--disable-pip-version-check", "--retries", "2", "--timeout", "30"]
    out = subprocess.run(
        [*pip, *words[1:], *tuning],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"},
    )
    if out.returncode != 0 and any(e in out.stdout + out.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"the package index is unreachable: {out.stderr.strip()[-300:]}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    version = subprocess.run(
        [str(venv / "bin" / "kdns"), "-version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith(f"kdns-{kdns.__version__}\n")

    # Every installed distribution is pinned: nothing in the image floats.
    freeze = subprocess.run(
        [*pip, "list", "--format", "json", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(freeze.stdout)}
    installed.pop(canonicalize_name("kdns"))
    pins = _pins()
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"
    assert all(installed[name] == pins[name] for name in installed)


# -- helpers -------------------------------------------------------------------------------


def _build_stage() -> Stage:
    """The stage whose venv the runtime stage copies."""
    runtime = dockerfile().stages[-1]
    sources = [a for a in runtime.all("COPY") if a.startswith("--from=")]
    (copy,) = sources
    return dockerfile().stage(copy.split()[0].removeprefix("--from="))


def _copy_sources() -> list[str]:
    """What the build stage copies from the context, relative to WORKDIR = context root."""
    sources: list[str] = []
    for args in _build_stage().all("COPY"):
        words = args.split()
        assert not words[0].startswith("--"), args
        sources.extend(w.rstrip("/") for w in words[:-1])
    return sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            ignored = not negated
    return ignored


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert m, f"constraints.txt: not an exact pin: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m[2]
    return pins


@functools.cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy" / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _deployment() -> dict[str, Any]:
    (deployment,) = [
        d
        for d in _render("base")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "coredns"
    ]
    return deployment
