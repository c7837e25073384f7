"""Kubeconfig files pointing at an emulator, for the client library, kubectl and kdns.

A token can be written inline or as ``tokenFile``: client-go and the Python client
re-read a token file, which is how a test rotates credentials under a running client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "apiemu"


def write(
    path: str | Path,
    server_url: str,
    *,
    token: str | None = None,
    token_file: str | Path | None = None,
    namespace: str = "default",
) -> Path:
    user: dict[str, Any] = {}
    if token is not None:
        user["token"] = token
    if token_file is not None:
        user["tokenFile"] = str(token_file)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT, "user": user}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT,
                                          "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }  # fmt: skip
    target = Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
