"""The manifests source under I/O errors: unreadable is never empty (issue 12, item 8).

EMFILE is what a process out of descriptors gets from ``os.scandir`` and ``open``; it is
injected here, since a real one would starve the test runner too. The process-level
variant (a folder made unreadable under a running kdns) is in test_forward_fds.py.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kdns.cluster import manifests, store
from tests.support.process import EXAMPLES


def services(st: store.Store) -> set[str]:
    return {f"default/{svc.name}" for svc in st.services_in("default")}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[manifests.ManifestsSource]:
    folder = tmp_path / "cluster"
    shutil.copytree(EXAMPLES, folder / "team")
    src = manifests.ManifestsSource(folder, store.Store())
    src.load()
    assert "default/web" in services(src.store)
    yield src


def failing(
    real: Callable[..., Any], when: Callable[[Any], bool], code: int = errno.EMFILE
) -> Callable[..., Any]:
    def fake(path: Any, *args: Any, **kwargs: Any) -> Any:
        if when(path):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    return fake


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EACCES, errno.EIO])
@pytest.mark.parametrize("where", ["root", "subfolder"])
def test_a_folder_that_cannot_be_listed_keeps_its_objects(
    source: manifests.ManifestsSource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
    where: str,
) -> None:
    target = source.directory if where == "root" else source.directory / "team"
    monkeypatch.setattr(os, "scandir", failing(os.scandir, lambda p: Path(p) == target, code))
    for _ in range(3):
        source.load()
    assert "default/web" in services(source.store)
    said = [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
    assert len(said) == 1, said  # once, not once per pass
    monkeypatch.undo()
    (source.directory / "team" / "10-default.yaml").unlink()
    assert source.load()
    assert "default/web" not in services(source.store)  # a real deletion still counts


def test_the_folder_itself_gone_keeps_the_last_good_state(
    source: manifests.ManifestsSource, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    source.directory.rename(moved)
    assert not source.load()
    assert "default/web" in services(source.store)
    moved.rename(source.directory)
    assert not source.load()


def test_a_subfolder_deleted_is_a_deletion(source: manifests.ManifestsSource) -> None:
    shutil.rmtree(source.directory / "team")
    assert source.load()
    assert "default/web" not in services(source.store)


def test_a_new_file_that_cannot_be_opened_is_read_on_a_later_pass(
    source: manifests.ManifestsSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = source.directory / "extra.yaml"
    extra.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: default}\n"
        "spec: {clusterIP: 10.96.0.99, ports: [{port: 80}]}\n"
    )
    monkeypatch.setattr(Path, "read_text", failing(Path.read_text, lambda p: p == extra))
    assert not source.load()
    assert "default/extra" not in services(source.store)
    monkeypatch.undo()
    assert source.load()  # same signature as before: read again all the same
    assert "default/extra" in services(source.store)


def test_a_missing_folder_is_still_an_error_at_the_first_load(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        manifests.ManifestsSource(tmp_path / "nope", store.Store()).load()
