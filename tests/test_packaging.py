"""The package as a user gets it: pyproject.toml's metadata, the hash-pinned locks the image
installs from (tools/lock.sh), and a wheel built, installed into a fresh venv and run."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kdns

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
)
# The image's platform: the locks are resolved for it (Linux, CPython 3.11).
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "extra": ""}


def _lock(name: str) -> dict[str, tuple[str, list[str], set[str]]]:
    """A pip-compile lock: canonical name -> (version, sha256 hashes, what it is "via")."""
    pins: dict[str, tuple[str, list[str], set[str]]] = {}
    current = ""
    in_via = False
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+?)(\s*;.*?)?\s*\\", line)
        if m:
            current = canonicalize_name(m[1])
            assert current not in pins, f"{current} pinned twice"
            pins[current] = (m[2], [], set())
            in_via = False
        elif line.startswith("--hash=sha256:"):
            pins[current][1].append(line.removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.startswith("# via"):
            in_via = True
            rest = line.removeprefix("# via").strip()
            if rest:
                pins[current][2].add(rest)
        elif in_via and line.startswith("#   "):
            pins[current][2].add(line.removeprefix("#").strip())
        elif line and not line.startswith("#"):
            raise AssertionError(f"{name}: unexpected line {raw!r}")
        else:
            in_via = in_via and line.startswith("#")
    return pins


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


# -- metadata ------------------------------------------------------------------------------


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = PROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    # PEP 639: with a license expression, no "License ::" classifier.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    (backend,) = [Requirement(r) for r in PROJECT["build-system"]["requires"]]
    assert backend.name == "setuptools" and not backend.specifier.contains("76.9")
    assert project["urls"]
    versions = [c.rpartition(":: ")[2] for c in project["classifiers"] if "Python :: 3." in c]
    assert versions and all(v >= "3.11" for v in versions)


def test_jsonpatch_is_a_test_dependency_only() -> None:
    project = PROJECT["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    test = {
        canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]
    }
    assert "jsonpatch" not in runtime and "jsonpatch" in test
    importers = [
        p
        for p in (ROOT / "kdns").rglob("*.py")
        if re.search(r"^\s*(from|import) jsonpatch\b", p.read_text(), re.M)
    ]
    assert not importers


# -- the locks -----------------------------------------------------------------------------


def test_runtime_lock_matches_pyproject() -> None:
    """Every runtime dependency pinned with hashes, within pyproject's range; nothing else
    but what they pull in (pip-compile's "via" notes, followed back to pyproject)."""
    pins = _lock("requirements.lock")
    direct = set()
    for text in PROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(LINUX):
            continue
        name = canonicalize_name(requirement.name)
        direct.add(name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run tools/lock.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (text, pins[name])
    for name, (_, hashes, via) in pins.items():
        assert hashes, f"{name} has no hash"
        assert via, f"{name}: no 'via' note; regenerate with tools/lock.sh"
        from_project = "kdns (pyproject.toml)" in via
        assert from_project == (name in direct), (name, via)
    # Reachable from pyproject's dependencies through "via" (parent -> child).
    reached, frontier = set(direct), set(direct)
    while frontier:
        frontier = {
            name
            for name, (_, _, via) in pins.items()
            if name not in reached and {canonicalize_name(v) for v in via} & frontier
        }
        reached |= frontier
    assert reached == set(pins), f"not needed by kdns: {sorted(set(pins) - reached)}"


def test_build_lock_matches_build_system() -> None:
    pins = _lock("requirements-build.lock")
    requires = [Requirement(r) for r in PROJECT["build-system"]["requires"]]
    assert set(pins) == {canonicalize_name(r.name) for r in requires}
    for requirement in requires:
        version, hashes, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version) and hashes


# -- a wheel, installed into a fresh venv, run -----------------------------------------------


def _run(args: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV")
    }
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, env=env, **kwargs
    )
    if out.returncode != 0 and any(e in out.stdout + out.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"the package index is unreachable: {out.stderr.strip()[-300:]}")
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    return out


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # The build backend comes from PyPI (build isolation): the dev venv's setuptools may be
    # older than [build-system] asks.
    _run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "dist"), str(ROOT)], timeout=180
    )
    (wheel,) = (tmp_path / "dist").glob("kdns-*.whl")
    # The optional C extension (the compiled-answer UDP loop) makes it a CPython wheel for
    # this platform; make test installs the compiler, so here it is always built.
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name == f"kdns-{kdns.__version__}-{tag}-{tag}-linux_{platform.machine()}.whl"

    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        built = f"kdns/server/_fastudp.{sysconfig.get_config_var('SOABI')}.so"
        assert built in names, "the C loop is in the wheel, built"
        dist_info = f"kdns-{kdns.__version__}.dist-info"
        meta = BytesParser().parsebytes(whl.read(f"{dist_info}/METADATA"), headersonly=True)
        assert f"{dist_info}/licenses/LICENSE" in names
    assert all(n.startswith(("kdns/", dist_info)) for n in names), "only kdns in the wheel"
    assert "kdns/py.typed" in names
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    runtime = {
        canonicalize_name(r.name) for r in requires if not r.marker or r.marker.evaluate(LINUX)
    }
    assert "jsonpatch" not in runtime

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", str(venv)])
    target = [
        *pip,
        "--python",
        str(venv / "bin" / "python"),
        "install",
        "--no-compile",
        "--no-deps",
    ]
    _run(
        [*target, "--require-hashes", "--only-binary=:all:", "-r", str(ROOT / "requirements.lock")],
        timeout=240,
    )
    _run([*target, "--no-index", str(wheel)])
    _run([*pip, "--python", str(venv / "bin" / "python"), "check"])
    kdns_bin = str(venv / "bin" / "kdns")

    # Run from elsewhere than the tree, so nothing imports the source checkout.
    assert _run([kdns_bin, "-version"], cwd=tmp_path).stdout.startswith(
        f"kdns-{kdns.__version__}\n"
    )
    plugins = _run([kdns_bin, "-plugins"], cwd=tmp_path).stdout
    assert "dns.kubernetes" in plugins and "dns.forward" in plugins
    assert _run([kdns_bin, "validate", str(ROOT / "deploy" / "base" / "Corefile")], cwd=tmp_path)
    origin = _run(
        [str(venv / "bin" / "python"), "-c", "import kdns; print(kdns.__file__)"], cwd=tmp_path
    )
    assert origin.stdout.startswith(str(venv))

    port = _free_port()
    server = subprocess.Popen(
        [
            kdns_bin,
            "serve",
            "--manifests",
            str(ROOT / "examples" / "cluster"),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        query = dns.message.make_query("web.default.svc.cluster.local", dns.rdatatype.A)
        deadline = time.monotonic() + 20
        answer = None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            except (dns.exception.Timeout, ConnectionRefusedError):
                time.sleep(0.1)
        assert answer is not None, f"no answer from the installed kdns: {server.poll()}"
        assert answer.rcode() == 0 and answer.answer, answer
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
