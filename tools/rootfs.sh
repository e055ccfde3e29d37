#!/bin/bash
# Another Debian release on this machine, to run pha's tests on it: a root file system built once
# with debootstrap and tools/setup.sh --apt-only, then entered with chroot. As root.
#   tools/rootfs.sh build RELEASE         build it (cached; rebuilt when the package list changes)
#   tools/rootfs.sh run RELEASE CMD...    run CMD in it, in this checkout (bind-mounted at its own path)
#   tools/rootfs.sh path RELEASE          print where it is
# RELEASE: debian12 | debian13 (or bookworm | trixie). The root file system is cached in
# PHA_ROOTFS_CACHE (default /var/cache)/pha-rootfs-CODENAME, outside the checkout, with the key of
# what it was built from (this script's FORMAT, the release, the mirror, setup.sh's package list).
# `run` mounts proc, sys, dev, a fresh run, tmp and dev/shm, and the checkout, in a private mount
# namespace: nothing is mounted on the host, and everything goes away with the command. Inside, the
# venv is PHA_VENV=/opt/pha-venv (outside the checkout: the host's .venv is the host's Python's).
# Debian's mirror is the one apt already uses here (/etc/apt/sources.list*), else deb.debian.org.
set -euo pipefail
SELF=$(readlink -f "$0")
SRC=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
FORMAT=1                                   # bump when what `build` does changes
CACHE=${PHA_ROOTFS_CACHE:-/var/cache}
BASE_PACKAGES=ca-certificates,python3,iproute2,procps,util-linux,kmod   # a Debian machine has them
PASS_ENV=(CI PHA_LAB_INSTANCE PHA_LAB_STATE PHA_LAB_PG PHA_LAB_KEEP_LOGS PYTEST_ADDOPTS PIP_INDEX_URL PIP_EXTRA_INDEX_URL
          PIP_CERT PIP_DEFAULT_TIMEOUT http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY)
LOCAL_CAS=/usr/local/share/ca-certificates   # a TLS-inspecting proxy's CA: pip in the root needs it too

die() { echo "rootfs.sh: $*" >&2; exit 1; }

codename() {
  case "$1" in
    debian12|bookworm) echo bookworm ;;
    debian13|trixie) echo trixie ;;
    *) die "$1: not a release this script knows (debian12, debian13)" ;;
  esac
}

# The first URI of apt's sources whose path ends in /$1 (debian or debian-security).
apt_uri() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  grep -hsE '^[[:space:]]*(deb[[:space:]]|URIs:)' "${files[@]}" | grep -oE '(https?|file)://[^[:space:]]+' |
    sed 's:/*$::' | grep -E "/$1\$" | head -1 || true
}
MIRROR=$(apt_uri debian); MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_uri debian-security); SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

key_of() { printf '%s\n' "format $FORMAT" "$1" "$MIRROR" "$BASE_PACKAGES" "$("$SRC/tools/setup.sh" --list-packages)" |
           sha256sum | cut -c1-16; }

sources() {  # deb822 sources of release $1
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\n' \
    "$MIRROR" "$1" "$1" /usr/share/keyrings/debian-archive-keyring.gpg
  printf 'Types: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
    "$SECURITY" "$1" /usr/share/keyrings/debian-archive-keyring.gpg
}

build() {
  local release=$1 root=$2 key new
  key=$(key_of "$release")
  if [ "$(cat "$root/.pha-rootfs-key" 2>/dev/null)" = "$key" ]; then
    echo "rootfs.sh: $root is up to date (key $key)"; return 0
  fi
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }; }
  new=$root.new
  rm -rf --one-file-system "$new"
  echo "rootfs.sh: building $root ($release from $MIRROR, key $key)"
  local t0=$SECONDS
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$release" "$new" "$MIRROR"
  rm -f "$new/etc/apt/sources.list"
  sources "$release" > "$new/etc/apt/sources.list.d/debian.sources"
  printf '#!/bin/sh\nexit 101\n' > "$new/usr/sbin/policy-rc.d"   # package scripts start no service
  chmod 755 "$new/usr/sbin/policy-rc.d"
  mkdir -p "$new/etc/postgresql-common/createcluster.d"      # no N/main cluster: the lab makes its own
  echo "create_main_cluster = false" > "$new/etc/postgresql-common/createcluster.d/pha-rootfs.conf"
  if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
    cp "$LOCAL_CAS"/*.crt "$new/usr/local/share/ca-certificates/"
    chroot "$new" update-ca-certificates >/dev/null
  fi
  [ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$new/etc/pip.conf"
  unshare --mount --propagation private -- "$SELF" _enter "$new" tools/setup.sh --apt-only
  chroot "$new" apt-get clean
  echo "$key" > "$new/.pha-rootfs-key"
  rm -rf --one-file-system "$root"
  mv "$new" "$root"
  echo "rootfs.sh: built $root in $((SECONDS - t0)) s ($(du -sh "$root" | cut -f1))"
  chroot "$root" dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' pacemaker corosync pcs \
    resource-agents 'postgresql-[0-9]*' python3 2>/dev/null | awk '$1 == "ii" {print "  " $2, $3}'
}

# In a private mount namespace (see `run`): mount what the root needs, then run "$@" in the checkout.
enter() {
  local root=$1; shift
  mount --bind "$root" "$root"           # "/" must be a mount point: the lab's `unshare --propagation`
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mkdir -p "$root$SRC"
  mount --bind "$SRC" "$root$SRC"
  cp --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
  local env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
             TERM="${TERM:-dumb}" PHA_VENV=/opt/pha-venv) name
  for name in "${PASS_ENV[@]}"; do [ -z "${!name+set}" ] || env+=("$name=${!name}"); done
  exec chroot "$root" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$SRC" "$@"
}

# End (by PID) what is still running from the root after a command: a lab or agent worker left behind.
end_leftovers() {
  local root=$1 p pids=()
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/root" 2>/dev/null)" in "$root"|"$root"/*) pids+=("${p#/proc/}") ;; esac
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  echo "rootfs.sh: ending what is left running in $root: ${pids[*]}" >&2
  kill "${pids[@]}" 2>/dev/null || true
}

[ "$(id -u)" = 0 ] || die "run as root"
command=${1:-}
[ "$command" = _enter ] && { shift; enter "$@"; }
[ $# -ge 2 ] || die "usage: $0 build|path RELEASE | run RELEASE CMD..."
release=$(codename "$2"); shift 2
root=$CACHE/pha-rootfs-$release
case "$command" in
  path) echo "$root" ;;
  build|run)
    exec 9>"$root.lock"
    flock 9                              # one build or run of this root at a time
    build "$release" "$root"
    [ "$command" = run ] || exit 0
    [ $# -gt 0 ] || die "run: no command"
    rc=0
    unshare --mount --propagation private -- "$SELF" _enter "$root" "$@" || rc=$?
    end_leftovers "$root"
    exit "$rc" ;;
  *) die "usage: $0 build|path RELEASE | run RELEASE CMD..." ;;
esac
