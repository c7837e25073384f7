"""A Kubernetes API server emulator on 127.0.0.1, speaking the real wire protocol.

No kube-apiserver can be installed where kdns is tested, yet kdns's informers must be
proven against what real API servers do: paged lists with resourceVersions, watch
streams with bookmarks, 410 Gone after compaction, 409, 429 with Retry-After, cut
streams, slow or absent servers, rotated tokens. The real ``kubernetes`` client and
``kubectl`` work against it, which is the test of its faithfulness.

Typical use in a synchronous test (or a fixture in the lead's conftest)::

    with apiemu.EmulatorThread(bookmark_interval=0.2) as emu:
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        emu.put(apiemu.builders.service("web", cluster_ip="10.96.0.20"))
        emu.fail_next(2, code=429, retry_after=1)
        emu.compact()
        emu.cut_watches(apiemu.Cut.MID_LINE)

and inside an event loop: ``async with apiemu.serving() as emu:``. Run it standalone
with ``python -m tests.support.apiemu`` (from the project root) and drive it through ``/_emu/``.
"""

from . import builders
from .emulator import Emulator, serving
from .faults import Cut
from .server import RequestRecord
from .threaded import EmulatorThread

__all__ = ["Cut", "Emulator", "EmulatorThread", "RequestRecord", "builders", "serving"]
