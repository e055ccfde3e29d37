#!/bin/bash
# Run pha's test suite (unit, lab and uml) as root, on this machine's Debian release (12 or 13):
#   tools/test.sh [pytest args]                      e.g. tools/test.sh -m unit
#   tools/test.sh --os debian13|debian12 [pytest args]
# --os names the other release: the suite then runs in a root file system of that release
# (tools/rootfs.sh: built once and cached, with the checkout bind-mounted at its own path).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
target=
if [ "${1:-}" = --os ]; then
  [ $# -ge 2 ] || { echo "test.sh: --os needs debian12 or debian13" >&2; exit 2; }
  target=$2; shift 2
  case "$target" in bookworm) target=debian12 ;; trixie) target=debian13 ;; esac
fi
this=debian$(. /etc/os-release && echo "${VERSION_ID%%.*}")
if [ -n "$target" ] && [ "$target" != "$this" ]; then
  exec tools/rootfs.sh run "$target" tools/test.sh "$@"
fi
tools/setup.sh
echo "test.sh: $this, $(pacemakerd --version | sed -n 1p), pcs $(pcs --version), PostgreSQL $(ls /usr/lib/postgresql | sort -n | tr '\n' ' ')"
exec "${PHA_VENV:-.venv}/bin/python" -m pytest "$@"
