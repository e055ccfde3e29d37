#!/bin/bash
# Put pha and its dependencies, as wheels for the nodes (Debian 12: CPython 3.11, x86_64), into a
# wheelhouse the nodes install from without network (install guide, step 1).
#
#   vagrant/build-wheels.sh [WHEELHOUSE]     (default vagrant/.lab/wheelhouse)
#
# Needs python3 with pip and access to PyPI. pha's wheel is built from a copy of this checkout
# (a build leaves build/ and *.egg-info behind; not in the checkout). Set PHA_NODE_PYTHON and
# PHA_NODE_PLATFORM for nodes other than Debian 12 on x86_64.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
OUT=${1:-$HERE/.lab/wheelhouse}
PYTHON=${PHA_PYTHON:-python3}
NODE_PYTHON=${PHA_NODE_PYTHON:-3.11}
NODE_PLATFORM=${PHA_NODE_PLATFORM:-manylinux2014_x86_64}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./vagrant --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./build -cf - . | tar -C "$work" -xf - --one-top-level=src
mkdir -p "$OUT"
rm -f "$OUT"/pha-*.whl
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps \
  -w "$OUT" "$work/src"
# the dependencies pha's wheel declares, as binary wheels for the nodes' Python
"$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
  --python-version "$NODE_PYTHON" --implementation cp --platform "$NODE_PLATFORM" \
  -d "$OUT" "$(ls "$OUT"/pha-*.whl)"
ls "$OUT"
