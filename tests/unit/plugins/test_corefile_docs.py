"""The ``corefile`` examples of every directive page in Corefile.compat/ load."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kdns.plugins import registry
from kdns.plugins.loader import load_text
from kdns.server import planner

COMPAT = Path(__file__).resolve().parents[3] / "Corefile.compat"
PAGES = (
    "kubernetes", "forward", "cache", "errors", "log", "health", "ready", "prometheus",
    "loop", "reload", "loadbalance", "hosts", "template", "import", "bind", "whoami",
    "manifests", "debug_endpoints", "rewrite", "acl", "tls",
)  # fmt: skip
SECTIONS = ("Name", "Description", "Syntax", "Examples", "Metrics", "Ready", "Bugs")
BLOCK = re.compile(r"^~~~ corefile\n(.*?)^~~~$", re.S | re.M)


def examples() -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    for page in PAGES:
        text = (COMPAT / f"{page}.md").read_text()
        out.extend((page, i, body) for i, body in enumerate(BLOCK.findall(text)))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_page_has_coredns_sections(page: str) -> None:
    text = (COMPAT / f"{page}.md").read_text()
    assert [h for h in re.findall(r"^## (\w+)", text, re.M)] == list(SECTIONS)
    assert BLOCK.search(text), f"{page}.md has no corefile example"


@pytest.mark.skipif(not os.path.exists("/etc/resolv.conf"), reason="examples may forward to it")
@pytest.mark.parametrize(("page", "index", "body"), examples())
def test_example_loads(page: str, index: int, body: str, tmp_path: Path) -> None:
    config = load_text(body, str(tmp_path / "Corefile"))
    assert config.blocks and not config.builtin_default
    names = {n for b in config.blocks for n in b.names()}
    # import is a parser feature; manifests may also be an option of kubernetes
    assert page in names or page == "import" or (page == "manifests" and "kubernetes" in names)


def test_readme_matrix_links_every_page() -> None:
    readme = (COMPAT / "README.md").read_text()
    for page in PAGES:
        assert f"({page}.md)" in readme


# kdns's webhook directives: their examples are stanzas of a block that needs kubernetes
# (and, for clusterip with an API server, envinject beside it).
HOSTS = {
    "envinject": "kubernetes cluster.local\n",
    "clusterip": "kubernetes cluster.local\nenvinject {\n tls /tls.crt /tls.key\n}\n",
}


@pytest.mark.parametrize("name", sorted(registry.PLUGINS))
def test_every_registered_directive_has_a_page(name: str) -> None:
    text = (COMPAT / f"{name}.md").read_text()
    headings = re.findall(r"^## (\w+)", text, re.M)
    assert headings[: len(SECTIONS)] == list(SECTIONS)
    assert BLOCK.search(text), f"{name}.md has no corefile example"
    assert f"({name}.md)" in (COMPAT / "README.md").read_text()


@pytest.mark.parametrize(
    ("page", "index", "body"),
    [
        (page, i, body)
        for page in sorted(HOSTS)
        for i, body in enumerate(BLOCK.findall((COMPAT / f"{page}.md").read_text()))
    ],
)
def test_webhook_directive_example_plans(page: str, index: int, body: str, tmp_path: Path) -> None:
    """Loaded, then read by the directive's own setup when the plan is built."""
    config = load_text(f".:53 {{\n{HOSTS[page]}{body}}}\n", str(tmp_path / "Corefile"))
    plan = planner.from_corefile(config)
    assert plan.webhooks, "envinject is served"
    if page == "clusterip":
        kube = plan.servers[0].blocks[0].kube
        assert kube is not None and kube.ipam is not None
