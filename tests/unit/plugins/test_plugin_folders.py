"""A plugin is one folder: everything of a directive is found by its name.

For every directive in :mod:`kdns.plugins.registry`: its setup, build and check live in
``kdns/plugins/<name>/``, a directive without a build says what builds it and why
(``built_by``), and ``Corefile.compat/<name>.md`` documents it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from kdns.corefile import directives
from kdns.plugins import registry

ROOT = Path(__file__).resolve().parents[3]


def _module(func: object) -> str:
    return str(getattr(func, "__module__", ""))


@pytest.mark.parametrize("name", sorted(registry.PLUGINS))
def test_setup_build_and_check_live_in_the_plugins_folder(name: str) -> None:
    plugin = registry.PLUGINS[name]
    folder = f"kdns.plugins.{name}."
    assert (ROOT / "kdns" / "plugins" / name / "setup.py").is_file()
    setup = importlib.import_module(f"{folder}setup")
    # a parser made by a factory (kdns.corefile.setup.raw) is still the folder's name
    assert plugin.setup in vars(setup).values(), plugin.setup
    for func in (plugin.build, plugin.check):
        if func is not None:
            assert _module(func).startswith(folder), (name, func)


@pytest.mark.parametrize("name", sorted(registry.PLUGINS))
def test_a_plugin_built_elsewhere_says_where_and_why(name: str) -> None:
    plugin = registry.PLUGINS[name]
    if plugin.build is None:
        assert plugin.where not in ("chain", "stage"), name
        assert ": " in plugin.built_by, f"{name}: built_by names what builds it and why"
    else:
        assert plugin.where in ("chain", "stage"), name
        assert not plugin.built_by, name


@pytest.mark.parametrize("name", sorted(registry.PLUGINS))
def test_every_directive_has_its_compat_page(name: str) -> None:
    assert (ROOT / "Corefile.compat" / f"{name}.md").is_file()


def test_the_registry_lists_every_implemented_directive_in_plugin_cfg_order() -> None:
    assert set(registry.PLUGINS) == set(directives.IMPLEMENTED)
    assert list(registry.PLUGINS) == [d for d in directives.ORDER if d in registry.PLUGINS]


def test_no_plugin_folder_is_left_out_of_the_registry() -> None:
    folders = {
        p.name
        for p in (ROOT / "kdns" / "plugins").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    }
    assert folders == set(registry.PLUGINS)
