#!/bin/bash
# Install everything pha needs on Debian 12 (apt packages and a venv in .venv),
# then, with --main, run the main job: a 3-node lab cluster with pha's agents,
# then its status. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
APT_PACKAGES=(pacemaker pacemaker-cli-utils corosync pcs resource-agents postgresql-15
              user-mode-linux ipvsadm busybox-static libxml2-utils haproxy python3-venv
              gcc libc6-dev)  # gcc: tools/uml-run builds a small preload for linux.uml
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (the lab needs namespaces and mounts)" >&2; exit 1; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
PY=${PYTHON:-/usr/bin/python3}  # Debian's: every user can run it (agents run as any user for meta-data)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

[ "${1:-}" = --main ] || exit 0
# The main job: a 3-node lab cluster with pha's agents (pgsql, writer and reader VIPs), then its status.
pha=.venv/bin/pha
$pha lab up --force
$pha setup templates/lab.ini
$pha lab exec node1 "$PWD/.venv/bin/pha" status
echo "The lab stays up: '$pha lab exec node1 crm_mon', '$pha lab status', '$pha lab down'."
