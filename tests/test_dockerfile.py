"""The Dockerfile, without a container engine: its structure, and its install steps for real.

No Docker daemon runs on these machines, so the image is never built here. What can break
silently is checked instead: the base is pinned by digest, the image runs as non-root, the
entrypoint, command, exposed ports and image name agree with deploy/, the build context
(.dockerignore) holds what the COPY lines need, no installer reaches the runtime image, and
the build stage's COPY and RUN lines are executed in order from exactly the files they copy,
ending with `kdns -version` from the venv the runtime stage copies.
"""

from __future__ import annotations

import email.parser
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
    r"python:(?P<version>3\.11\.\d+)-slim-bookworm@sha256:[0-9a-f]{64}"
)  # an exact patch release, and by digest
RUNTIME_VENV = "/opt/kdns"
LOCKS = ("requirements.lock", "requirements-build.lock")
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
    args: dict[str, str]  # ARGs before the first FROM, with their defaults

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found


@functools.cache
def dockerfile() -> Dockerfile:
    """Instructions with continuation lines joined, grouped by stage; comments kept apart."""
    stages: list[Stage] = []
    comments: list[str] = []
    args_: dict[str, str] = {}
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
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda v: args_[v[1] or v[2]], m[1])
            stages.append(Stage(image, m[2] or str(len(stages))))
        elif keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            args_[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(stages, comments, args_)


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


def test_dependencies_are_installed_from_hashed_locks() -> None:
    """Every pip install in the build stage checks hashes and takes wheels only (nothing
    compiled, nothing resolved), except the kdns wheel the stage itself built."""
    installs = [r for r in _build_stage().all("RUN") if "pip " in r]
    locks = []
    for run in installs:
        for step in run.split("&&"):
            words = shlex.split(step)
            if words[:1] != ["pip"]:
                continue
            if "-r" in words:
                assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), step
                locks.append(words[words.index("-r") + 1])
            elif "install" in words:
                assert {"--no-deps", "--no-index"} <= set(words), step
                assert words[-1].startswith("/wheels/kdns-") and words[-1].endswith(".whl")
            else:
                assert words[1] == "wheel" and "--no-build-isolation" in words, step
    assert sorted(locks) == sorted(LOCKS)


def test_runtime_image_has_no_installer() -> None:
    """pip and setuptools stay in the build stage: the venv is made without them, and the
    base image's own copies are removed from the runtime stage."""
    runs = _build_stage().all("RUN")
    venvs = [shlex.split(r) for r in runs if "-m venv" in r]
    assert venvs == [["python", "-m", "venv", "--without-pip", RUNTIME_VENV]]
    runtime = dockerfile().stages[-1]
    assert [a.split()[1:] for a in runtime.all("COPY")] == [[RUNTIME_VENV, RUNTIME_VENV]]
    (run,) = runtime.all("RUN")
    steps = [s.strip() for s in run.split("&&")]
    assert "python -m pip uninstall -y pip setuptools wheel" in steps
    assert "rm -rf /usr/local/lib/python3.11/ensurepip" in steps
    assert steps.index("python -m pip uninstall -y pip setuptools wheel") > max(
        i for i, s in enumerate(steps) if s.startswith("apt-get")
    )


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


def test_build_stage_runs_and_its_venv_works(tmp_path: Path) -> None:
    """The build stage's COPY and RUN lines in order, from a context holding only what its
    COPY lines copy, with a fresh venv (pip included) standing for the base image's Python
    and its absolute paths moved under tmp_path.

    One liberty, for speed only: bytecode is not compiled (the image compiles it).
    """
    context, root = tmp_path / "src", tmp_path / "root"
    context.mkdir()
    base_python = getattr(sys, "_base_executable", sys.executable)
    builder = tmp_path / "builder"
    subprocess.run([base_python, "-m", "venv", str(builder)], check=True, timeout=120)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV")
    }
    env |= {"PATH": f"{builder / 'bin'}:{env['PATH']}", "PIP_NO_COMPILE": "1"}
    env |= {"PIP_RETRIES": "2", "PIP_TIMEOUT": "30", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for keyword, args in _build_stage().instructions:
        if keyword == "COPY":
            for source in args.split()[:-1]:
                src = ROOT / source
                if src.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__")
                    shutil.copytree(src, context / source, ignore=ignore)
                else:
                    shutil.copy2(src, context / source)
        elif keyword == "RUN" and args.startswith("apt-get"):
            # The compiler for kdns's extension: this machine has it (make test installs
            # build-essential's part of it); the run below fails if it did not.
            assert shutil.which("gcc"), "the build stage's apt-get line installs gcc"
        elif keyword == "RUN":
            command = re.sub(r"(?<![\w.])/(opt|wheels)\b", f"{root}/\\1", args)
            out = subprocess.run(
                ["sh", "-ec", command],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            if out.returncode != 0 and any(e in out.stdout + out.stderr for e in NETWORK_ERRORS):
                pytest.skip(f"the package index is unreachable: {out.stderr.strip()[-300:]}")
            assert out.returncode == 0, (command, out.stdout[-2000:] + out.stderr[-2000:])
        else:
            assert keyword in ("WORKDIR", "ENV"), f"teach this test {keyword}"
    venv = root / RUNTIME_VENV.removeprefix("/")

    version = subprocess.run(
        [str(venv / "bin" / "kdns"), "-version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith(f"kdns-{kdns.__version__}\n")
    # The image serves UDP from the C loop, not the ctypes fallback.
    fast = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import kdns.server._fastudp"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fast.returncode == 0, fast.stderr

    # What the runtime stage copies holds no installer, and exactly the locked closure.
    installed = _distributions(venv)
    assert not {"pip", "setuptools", "wheel"} & set(installed), sorted(installed)
    kdns_dist = installed.pop("kdns")
    assert kdns_dist["Version"] == kdns.__version__
    pins = {name: version for name, (version, _) in _lock("requirements.lock").items()}
    assert {n: d["Version"] for n, d in installed.items()} == pins
    assert _closure(kdns_dist, installed) == set(installed), "the lock holds an unused package"


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


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """A pip-compile lock: canonical name -> (version, sha256 hashes)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(
            r"([A-Za-z0-9._-]+)==(\S+?)(\s*;.*?)?((?:\s+--hash=sha256:[0-9a-f]{64})+)", line
        )
        assert m, f"{name}: not an exact pin with hashes: {line!r}"
        canonical = canonicalize_name(m[1])
        assert canonical not in pins, f"{canonical} pinned twice"
        pins[canonical] = (m[2], re.findall(r"sha256:([0-9a-f]{64})", m[4]))
    return pins


def _distributions(venv: Path) -> dict[str, Any]:
    """The METADATA of every distribution installed in venv, by canonical name."""
    found: dict[str, Any] = {}
    for meta in venv.glob("lib/python*/site-packages/*.dist-info/METADATA"):
        message = email.parser.BytesParser().parse(meta.open("rb"), headersonly=True)
        found[canonicalize_name(message["Name"])] = message
    return found


def _closure(top: Any, installed: dict[str, Any]) -> set[str]:
    """The distributions top requires, transitively, without extras, on this platform."""
    seen: set[str] = set()
    todo = [top]
    while todo:
        for text in todo.pop().get_all("Requires-Dist") or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            assert name in installed, f"{name} is required but not installed"
            if name not in seen:
                seen.add(name)
                todo.append(installed[name])
    return seen


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
