"""``tls`` and the encrypted-DNS options of ``forward``: what ``kdns validate`` accepts,
warns about and refuses, run in process (``kdns validate PATH``'s exit code and output).

The listeners and upstreams themselves are tested end to end in
tests/integration/test_encrypted_dns.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from kdns.cli import validate as validate_command
from kdns.envinject import certs


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Pki:
    cert: Path
    key: Path
    ca_file: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = certs.make_ca("kdns test CA")
    pair = certs.issue(ca, ["dns.example.test"], ["127.0.0.1"])
    pki = Pki(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    pki.ca_file.write_bytes(ca.cert_pem)
    pki.cert.write_bytes(pair.cert_pem)
    pki.key.write_bytes(pair.key_pem)
    return pki


def validate(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Done:
    path = tmp_path / "Corefile"
    path.write_text(text)
    capsys.readouterr()
    code = validate_command.validate([str(path)])
    out = capsys.readouterr()
    return Done(code, out.out, out.err)


def test_validate_accepts_coredns_encrypted_corefiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path / "pki")
    text = f"""\
tls://.:853 {{
    tls {pki.cert} {pki.key} {pki.ca_file} {{
        client_auth verify_if_given
    }}
    forward . tls://9.9.9.9 {{
        tls_servername dns.quad9.net
        health_check 5s
    }}
}}
https://.:443 {{
    tls {pki.cert} {pki.key}
    forward . https://9.9.9.9 {{
        tls_servername dns.quad9.net
        doh_method GET
    }}
    cache 30
}}
"""
    done = validate(text, tmp_path, capsys)
    assert done.returncode == 0, done
    assert "WARNING" not in done.stdout + done.stderr, done


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (".:53 {\n    tls a.crt a.key\n    whoami\n}\n", "only tls:// and https:// server blocks"),
        ("tls://.:853 {\n    whoami\n}\n", "has no tls directive: served unencrypted"),
        (
            ".:53 {\n    forward . 10.0.0.1 {\n        doh_method GET\n    }\n}\n",
            "doh_method is not acted on",
        ),
    ],
)
def test_validate_warns_what_is_not_acted_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    done = validate(text, tmp_path, capsys)
    assert expected in done.stdout + done.stderr, done


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls://.:853 {\n    tls a\n}\n", "Wrong argument count"),
        (
            "tls://.:853 {\n    tls a b {\n        client_auth require\n    }\n}\n",
            "client_auth require is not supported by kdns",
        ),
        (
            "tls://.:853 {\n    tls a b {\n        client_auth maybe\n    }\n}\n",
            "unknown authentication type 'maybe'",
        ),
        (
            ".:53 {\n    forward . https://10.0.0.1 {\n        doh_method PUT\n    }\n}\n",
            "unknown doh_method 'PUT'",
        ),
    ],
)
def test_validate_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    done = validate(text, tmp_path, capsys)
    assert done.returncode != 0 and expected in done.stdout + done.stderr, done
