"""``python -m tests.support.apiemu``: the emulator as its own process, driven through ``/_emu/``.

Useful to point a hand-run kdns or kubectl at, and for tests that want the emulator
in another process. Prints one JSON line with the URLs once it is listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from . import kubeconfig
from .emulator import serving


async def _main(args: argparse.Namespace) -> None:
    async with serving(
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        bookmark_interval=args.bookmark_interval,
        token=args.token,
    ) as emu:
        if args.kubeconfig:
            kubeconfig.write(args.kubeconfig, emu.url, token=args.token)
        print(json.dumps({"url": emu.url, "control": emu.control_url}), flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.apiemu", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
