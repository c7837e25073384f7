"""The README's quick start must work as printed: every command of the tour is run here.

The tour talks to ``make run``'s server on 127.0.0.1:1053; the test starts the same
server on a free port and rewrites the port in the commands, then compares each
command's output with the lines the README shows under it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, KdnsProcess

README = ROOT / "README.md"


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


@pytest.mark.parametrize("step", range(len(_tour())))
def test_tour_command_runs(step: int, example_server: KdnsProcess, tmp_path: Path) -> None:
    command, expected = _tour()[step]
    port = str(example_server.port)
    command = command.replace("-p 1053", f"-p {port}").replace("-port=1053", f"-port={port}")
    args = shlex.split(command)
    if args[0].startswith(".venv/bin/"):
        args[0] = str(ROOT / args[0])
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
    assert lines[: len(expected)] == expected or set(expected) <= set(lines), result.stdout
