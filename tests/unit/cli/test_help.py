"""The help of every command: ``--help`` exits 0 and shows the command's own flags, none of
its parent's or siblings' (``kdns validate --help`` was read as a file name, ``kdns ipam
status --help`` and ``kdns envinject certs --help`` showed their parent's help)."""

from __future__ import annotations

import pytest

from kdns.cli import main as kdns_main  # the function kdns.cli.main.main

SERVE = (
    "--manifests", "--kubeconfig", "--endpoint", "--in-cluster", "--listen", "--zone",
    "--upstream", "--no-forward", "--resolv-conf", "--health-addr", "--ready-addr",
    "--metrics-addr", "--debug-addr", "--log-format", "--debug", "--lameduck",
    "--service-cidr", "--ipam-store", "--context",
)  # fmt: skip
IPAM_STATUS = ("--manifests", "--server", "--service-cidr", "--ipam-store", "--output")
CERTS = ("--service", "--namespace", "--secret", "--zone", "--days", "--out")
EXPLAIN = (
    "--type", "--from-namespace", "--ndots", "--manifests", "--kubeconfig", "--server",
    "--context", "--zone", "--output",
)  # fmt: skip
EVERY = set(SERVE + IPAM_STATUS + CERTS + EXPLAIN)

# (argv, flags its help must show, what it must say)
CASES: list[tuple[list[str], tuple[str, ...], str]] = [
    (["--help"], ("-conf", "serve", "validate", "explain", "ipam", "envinject"), "usage: kdns"),
    (["serve", "--help"], SERVE, "from a cluster's API server"),
    (["validate", "--help"], (), "usage: kdns validate [-h] PATH"),
    (["explain", "--help"], EXPLAIN, "usage: kdns explain"),
    (["ipam", "--help"], (), "status"),
    (["ipam", "status", "--help"], IPAM_STATUS, "usage: kdns ipam status"),
    (["envinject", "--help"], (), "certs"),
    (["envinject", "certs", "--help"], CERTS, "usage: kdns envinject certs"),
]


@pytest.mark.parametrize(("argv", "flags", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_help(
    argv: list[str], flags: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        kdns_main(argv)
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    assert says in out
    words = set(out.translate(str.maketrans(",[]()|", "      ")).split())
    for flag in flags:
        assert flag in words, f"{flag} missing from {' '.join(argv)}"
    if argv != ["--help"]:
        others = EVERY - set(flags)
        assert not others & words, f"{' '.join(argv)} shows another command's flags"


def test_json_is_a_deprecated_alias_of_output_json(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from kdns.cli import common, ipam

    args = ipam.parser().parse_args(["status", "--manifests", "x", "--json"])
    assert common.output_of(args, "kdns ipam status") == "json"
    assert "--json is deprecated, use -o json" in capsys.readouterr().err
    args = ipam.parser().parse_args(["status", "--manifests", "x", "-o", "json"])
    assert common.output_of(args, "kdns ipam status") == "json"
    assert capsys.readouterr().err == ""
