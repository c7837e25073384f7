"""kdns's ``manifests DIR`` directive: a folder of Kubernetes YAML as the cluster source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, once


@dataclass(frozen=True, slots=True)
class ManifestsConfig:
    """kdns: serve the Kubernetes YAML in ``dir`` (relative to the Corefile's folder)."""

    NAME: ClassVar[str] = "manifests"

    dir: str


def parse_manifests(d: Dispenser, ctx: SetupContext) -> list[ManifestsConfig]:
    config: ManifestsConfig | None = None
    for _ in once(d):
        args = d.remaining_args()
        if len(args) != 1:
            raise d.arg_err()
        path = args[0]
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(d.file())), path))
        config = ManifestsConfig(path)
    assert config is not None
    return [config]
