#!/bin/bash
# Install everything pha needs on Debian 12 or 13 (apt packages and a venv), as root.
#   tools/setup.sh                  packages and the venv (idempotent)
#   tools/setup.sh --main           then the main job: a 3-node lab cluster with pha's agents, its status
#   tools/setup.sh --apt-only       the apt packages only (tools/rootfs.sh builds a root file system with it)
#   tools/setup.sh --list-packages  print the package list (PostgreSQL and fence_ipmilan: see below)
# PostgreSQL: the release's own (the server the `postgresql` metapackage depends on, else the newest
# postgresql-N apt knows); nothing is added when a server is already installed. fence_ipmilan:
# fence-agents-ipmilan where the release has it (13), else fence-agents (12). The venv is .venv in
# the checkout, or PHA_VENV (tools/rootfs.sh keeps the other release's venv outside the checkout).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
APT_PACKAGES=(pacemaker pacemaker-cli-utils corosync pcs resource-agents
              user-mode-linux ipvsadm busybox-static libxml2-utils haproxy python3-venv
              gcc libc6-dev   # gcc: tools/uml-run builds a small preload for linux.uml
              openipmi ipmitool)   # the lab's BMCs (pha.lab.fence), with fence_ipmilan below
VENV=${PHA_VENV:-.venv}
mode=${1:-}
case "$mode" in
  ""|--main|--apt-only) ;;
  --list-packages) printf '%s\n' "${APT_PACKAGES[@]}" postgresql fence_ipmilan; exit 0 ;;
  *) echo "usage: $0 [--main | --apt-only | --list-packages]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (the lab needs namespaces and mounts)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_update() { [ -n "$apt_updated" ] || { apt-get update -q; apt_updated=1; }; }

pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

# The release's PostgreSQL server package: postgresql-N of the metapackage, else the newest postgresql-N.
pg_server_package() {
  local pkg
  pkg=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: \(postgresql-[0-9][0-9]*\)$/\1/p' | head -1)
  [ -n "$pkg" ] || pkg=$(apt-cache pkgnames postgresql- 2>/dev/null | grep -E '^postgresql-[0-9]+$' |
                         sort -t- -k2 -n | tail -1)
  echo "$pkg"
}

apt_has() { apt-cache show "$1" >/dev/null 2>&1; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ! pg_server_installed; then
  pg=$(pg_server_package)
  if [ -z "$pg" ]; then apt_update; pg=$(pg_server_package); fi
  [ -n "$pg" ] || { echo "setup.sh: apt knows no postgresql-N package" >&2; exit 1; }
  missing+=("$pg")
fi
if [ ! -x /usr/sbin/fence_ipmilan ]; then
  apt_has fence-agents || apt_update
  if apt_has fence-agents-ipmilan; then missing+=(fence-agents-ipmilan); else missing+=(fence-agents); fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt_update
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ "$mode" = --apt-only ] && exit 0

PY=${PYTHON:-/usr/bin/python3}  # Debian's: every user can run it (agents run as any user for meta-data)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'

[ "$mode" = --main ] || exit 0
# The main job: a 3-node lab cluster with pha's agents (pgsql, writer and reader VIPs), then its status.
pha=$VENV/bin/pha
$pha lab up --force
$pha setup templates/lab.ini
$pha lab exec node1 "$(readlink -f "$VENV")/bin/pha" status
echo "The lab stays up: '$pha lab exec node1 crm_mon', '$pha lab status', '$pha lab down'."
