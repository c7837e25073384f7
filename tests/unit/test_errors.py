"""kdns's exceptions: one root, four families, no two classes of the same name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kdns
from kdns import errors


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(kdns.__path__, "kdns."):
        if info.name == "kdns.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_exception_descends_from_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) > 20
    strays = [
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, errors.KdnsError)
    ]
    assert not strays


def test_no_two_exception_classes_share_a_name() -> None:
    names = [c.__name__ for c in _exception_classes()]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_families_sit_under_the_root() -> None:
    for family in (
        errors.ConfigurationError,
        errors.SourceError,
        errors.ProtocolError,
        errors.WebhookError,
        errors.AllocatorError,
    ):
        assert family.__bases__ == (errors.KdnsError,)
