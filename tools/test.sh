#!/bin/bash
# Run pha's whole test suite (unit, lab and uml) on Debian 12, as root.
# Extra arguments go to pytest, e.g. tools/test.sh -m unit
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
tools/setup.sh
exec .venv/bin/python -m pytest "$@"
