"""The README's quick start must work as printed: every command of the tour is run here.

The tour talks to ``make run``'s server on 127.0.0.1:1053; the test starts the same
server on a free port and rewrites the port in the commands. Each step is checked
twice: the lines the README prints under it must appear in the output, and the step's
row in :data:`EXPECTED` must match, so a step the README shows without output (or one
whose output silently empties) still has to show what a reader is promised.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.process import ROOT, KdnsProcess, wait_until

README = ROOT / "README.md"

# Tour step (the command as the README prints it, comment dropped) -> regexes its
# standard output must match, each searched in the whole output (re.M).
EXPECTED: dict[str, tuple[str, ...]] = {
    "dig @127.0.0.1 -p 1053 web.default.svc.cluster.local +short": (r"^10\.96\.0\.20$",),
    "dig @127.0.0.1 -p 1053 _http._tcp.api.shop.svc.cluster.local SRV +short": (
        r"^0 50 80 api\.shop\.svc\.cluster\.local\.$",
    ),
    "dig @127.0.0.1 -p 1053 db.data.svc.cluster.local +short": (
        r"^10\.244\.1\.30$",
        r"^10\.244\.2\.31$",
    ),
    "dig @127.0.0.1 -p 1053 db-0.db.data.svc.cluster.local +short": (r"^10\.244\.1\.30$",),
    "dig @127.0.0.1 -p 1053 -x 10.96.0.20 +short": (r"^web\.default\.svc\.cluster\.local\.$",),
    "dig @127.0.0.1 -p 1053 payments.shop.svc.cluster.local +short": (
        r"^payments\.example\.com\.$",
    ),
    # The README prints no output for these two: nslookup's layout varies between
    # bind9 releases and explain's report is long, so only the facts are pinned.
    "nslookup -port=1053 web.default.svc.cluster.local 127.0.0.1": (
        r"^Name:\s+web\.default\.svc\.cluster\.local$",
        r"^Address:\s+10\.96\.0\.20$",
    ),
    ".venv/bin/kdns explain web.default.svc.cluster.local --manifests examples/cluster": (
        r"^web\.default\.svc\.cluster\.local A: resolves$",
        r"^Service default/web: ClusterIP 10\.96\.0\.20$",
        r"EndpointSlice \S+ \(IPv4\): 1 ready, 1 not ready",
    ),
}


def _tour() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every ``$ `` line of the tour's console block."""
    text = README.read_text()
    section = text.split("## A 60-second tour", 1)[1].split("\n## ", 1)[0]
    block = section.split("```console", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.strip().splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("  #", 1)[0].strip(), []))
        elif steps:
            steps[-1][1].append(line.strip())
    return steps


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("## ", 1)[0]
    assert "make run" in head and "make test" in head
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_tour_step_has_a_check() -> None:
    """A new or reworded step must get a row, or it would run unchecked."""
    commands = [command for command, _ in _tour()]
    assert sorted(commands) == sorted(EXPECTED)


def _run_step(command: str, port: int) -> str:
    command = command.replace("-p 1053", f"-p {port}").replace("-port=1053", f"-port={port}")
    args = shlex.split(command)
    if args[0].startswith(".venv/bin/"):
        args[0] = str(ROOT / args[0])
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("step", range(len(_tour())))
def test_tour_command_runs(step: int, example_server: KdnsProcess) -> None:
    command, printed = _tour()[step]
    output = _run_step(command, example_server.port)
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    assert set(printed) <= set(lines), output
    for pattern in EXPECTED.get(command, ()):
        assert re.search(pattern, output, re.M), f"{command}: no {pattern!r} in:\n{output}"


def test_tour_edit_changes_the_answer(kdns_factory: type[KdnsProcess], manifests_dir: Path) -> None:
    """The tour's last promise: edit a YAML file and the answer changes without a restart."""
    server = kdns_factory(manifests_dir)
    command = "dig @127.0.0.1 -p 1053 web.default.svc.cluster.local +short"
    assert _run_step(command, server.port).split() == ["10.96.0.20"]
    path = manifests_dir / "10-default.yaml"
    path.write_text(path.read_text().replace("10.96.0.20", "10.96.0.21"))
    wait_until(lambda: _run_step(command, server.port).split() == ["10.96.0.21"], timeout=5)
