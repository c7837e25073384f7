"""The kdns process helper: a real ``kdns serve`` (or any kdns command) on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query

ROOT = Path(__file__).resolve().parents[2]


EXAMPLES = ROOT / "examples" / "cluster"


_SERVING = re.compile(r"serving DNS on (\S*):(\d+)")


class KdnsProcess:
    """A running ``kdns serve``; its stderr is collected for assertions."""

    def __init__(self, manifests: Path, args: Sequence[str] = (), listen: str = "127.0.0.1:0"):
        cmd = [sys.executable, "-m", "kdns", "serve", "--manifests", str(manifests)]
        cmd += ["--listen", listen, *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._port_seen = threading.Event()
        self.host = "127.0.0.1"
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._port_seen.wait(20):
            self.stop()
            raise RuntimeError("kdns did not start:\n" + self.log)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = _SERVING.search(line)
            if match and not self._port_seen.is_set():
                self.host, self.port = match.group(1).strip("[]"), int(match.group(2))
                self._port_seen.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r} in:\n{self.log}")

    def query(
        self, name: str, rdtype: str | int = "A", tcp: bool = False, **kwargs: object
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=3)
        return dns.query.udp(q, self.host, port=self.port, timeout=3)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        return self.proc.returncode


SETPRIV = shutil.which("setpriv")
DROP_DAC = (
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
)
"""Root without these capabilities obeys file modes, so ``chmod 000`` means unreadable."""


def obeys_file_modes() -> tuple[str, ...] | None:
    """A command prefix under which kdns obeys file modes: none needed unless root, and
    for root setpriv dropping the DAC capabilities (not every container allows it)."""
    if os.geteuid() != 0:
        return ()
    if SETPRIV is None:
        return None
    done = subprocess.run([SETPRIV, *DROP_DAC, "true"], capture_output=True, check=False)
    return (SETPRIV, *DROP_DAC) if done.returncode == 0 else None


class KdnsCommand:
    """``python -m kdns ARGS`` answering on a known DNS port; its stderr is collected."""

    def __init__(
        self,
        args: Sequence[str],
        dns_port: int,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.port = dns_port
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "kdns", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def query(self, name: str, rdtype: str = "A", timeout: float = 2) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)

    def alive(self) -> None:
        """Fail at once, with kdns's log, when the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"kdns exited ({self.proc.returncode}):\n{self.log}")

    def rcode(self, name: str, rdtype: str = "A") -> int | None:
        """The answer's rcode, None while nothing answers; fails at once if kdns exited."""
        self.alive()
        try:
            return int(self.query(name, rdtype, timeout=0.5).rcode())
        except (OSError, dns.exception.DNSException):
            return None

    def records(self, name: str, rdtype: str = "A") -> list[str]:
        """The answer section's rdata texts, in the order sent."""
        return [rr.to_text() for rrset in self.query(name, rdtype).answer for rr in rrset]

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (which sits out any lameduck) or, with ``graceful=False``, SIGKILL."""
        if self.proc.poll() is None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait(15)


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET; 0 when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def rrset_texts(msg: dns.message.Message, section: str = "answer") -> list[str]:
    """Records of a section as zone-file lines, sorted: easy to compare with a table."""
    out = []
    for rrset in getattr(msg, section):
        for line in rrset.to_text().splitlines():
            out.append(" ".join(line.split()))
    return sorted(out)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_until(predicate: object, timeout: float = 5.0, interval: float = 0.05) -> None:
    """Poll a condition that has no event to await (a file watcher's effect, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
