#!/bin/sh
# Regenerate the hash-pinned locks the container image installs from:
#   requirements.lock        the closure of pyproject.toml's [project] dependencies
#   requirements-build.lock  the build backend (setuptools), for `pip wheel --no-build-isolation`
# Run with the image's Python minor version (3.11), after changing [project] dependencies or
# [build-system] requires. tests/test_packaging.py checks the locks against pyproject.toml.
#
#   tools/lock.sh            # both locks, newest versions pyproject.toml allows
#   tools/lock.sh -P aiohttp # only bump one package
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TOOLS=${TOOLS:-${TMPDIR:-/tmp}/kdns-lock-tools}
# pip-tools pinned too: its output format is part of what the tests read.
[ -x "$TOOLS/bin/pip-compile" ] || {
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q pip-tools==7.7.0
}
# No find-links or index URL in the output: the lock names packages and hashes only.
common="--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host"
export CUSTOM_COMPILE_COMMAND="tools/lock.sh"
# shellcheck disable=SC2086
"$TOOLS/bin/pip-compile" $common "$@" --output-file requirements.lock pyproject.toml
# shellcheck disable=SC2086
"$TOOLS/bin/pip-compile" $common "$@" --only-build-deps --build-deps-for wheel \
    --output-file requirements-build.lock pyproject.toml
