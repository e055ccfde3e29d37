#!/bin/bash
# The lab on a machine without virtualisation: Vagrant with the lxc provider (vagrant-lxc), every
# node an LXC container (systemd inside) on a bridge in a network namespace of its own, with no
# uplink: the nodes reach each other and the host's vagrant, nothing else, and nothing is added
# to the host's own network (no bridge, address, route or iptables rule).
#
#   vagrant/lab.sh up [vagrant args]     prepare, then vagrant up
#   vagrant/lab.sh prepare               build what is missing (box, wheelhouse), add the box, netns
#   vagrant/lab.sh ssh node1 -c 'sudo pha status'
#   vagrant/lab.sh destroy               vagrant destroy -f, then the namespace goes
#   vagrant/lab.sh in-netns CMD ...      any command in the lab's namespace
#   vagrant/lab.sh ARGS ...              any other vagrant command (status, provision, halt, ...)
#
# As root. Environment: PHA_VAGRANT_CACHE (/var/cache/pha-vagrant: the box, and VAGRANT_HOME),
# PHA_LAB_DIR (vagrant/.lab: wheelhouse, corosync key, Vagrant's state), PHA_LAB_NAME (phalab:
# container names, the namespace vagrant-NAME), PHA_NET, PHA_NODES (see the Vagrantfile).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PHA_VAGRANT_CACHE=${PHA_VAGRANT_CACHE:-/var/cache/pha-vagrant}
export PHA_LAB_DIR=${PHA_LAB_DIR:-$HERE/.lab}
export PHA_LAB_NAME=${PHA_LAB_NAME:-phalab}
export PHA_NET=${PHA_NET:-192.168.56}
export PHA_LXC_BRIDGE=phabr0
export PHA_LXC_BOX=pha/bookworm-lxc
export VAGRANT_HOME=$PHA_VAGRANT_CACHE/vagrant.d
export VAGRANT_DOTFILE_PATH=$PHA_LAB_DIR/vagrant
export VAGRANT_DEFAULT_PROVIDER=lxc VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export VAGRANT_CWD=$HERE
NETNS=vagrant-$PHA_LAB_NAME

# CMD in the lab's netns, in a mount namespace of its own with that netns' sysfs (lxc looks for the
# bridge in /sys/class/net) and the host's cgroup hierarchies kept (ip netns exec would drop them).
in_netns() {
  nsenter --net="/run/netns/$NETNS" unshare --mount --propagation slave sh -c '
    set -e
    keep=$(mktemp -d /run/pha-lab-cgroup.XXXXXX)
    mount --rbind /sys/fs/cgroup "$keep"
    umount -l /sys
    mount -t sysfs sysfs /sys
    mount --move "$keep" /sys/fs/cgroup
    rmdir "$keep"
    exec "$@"' sh "$@"
}

netns_up() {
  [ -e "/run/netns/$NETNS" ] || ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  if ! ip -n "$NETNS" link show $PHA_LXC_BRIDGE >/dev/null 2>&1; then
    ip -n "$NETNS" link add $PHA_LXC_BRIDGE type bridge
    ip -n "$NETNS" addr add "$PHA_NET.1/24" dev $PHA_LXC_BRIDGE
    ip -n "$NETNS" link set $PHA_LXC_BRIDGE up
  fi
}

box_added() {
  local box=$1 mark=$VAGRANT_HOME/pha-bookworm-lxc.added
  [ "$(cat "$mark" 2>/dev/null)" = "$box" ] && return
  mkdir -p "$VAGRANT_HOME"
  (cd "$PHA_LAB_DIR" && vagrant box add --force --name $PHA_LXC_BOX "$box")
  echo "$box" > "$mark"
}

prepare() {
  mkdir -p -m 700 "$PHA_LAB_DIR"
  local box
  box=$("$HERE/box/build.sh" "$PHA_VAGRANT_CACHE" | tee /dev/stderr | tail -1)
  box_added "$box"
  [ -n "$(ls "$PHA_LAB_DIR"/wheelhouse/pha-*.whl 2>/dev/null)" ] || "$HERE/build-wheels.sh" "$PHA_LAB_DIR/wheelhouse"
  install -m 0644 "$HERE/../templates/pha-guard.service" "$PHA_LAB_DIR/pha-guard.service"
  netns_up
}

[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (LXC containers, network namespaces)" >&2; exit 1; }
case "${1:-}" in
  prepare)
    prepare;;
  up)
    prepare
    in_netns vagrant "$@";;
  destroy)
    if [ -e "/run/netns/$NETNS" ]; then
      # a lab needs no clean shutdown: kill the nodes, then let Vagrant remove them
      for name in $(lxc-ls -1 2>/dev/null | grep "^$PHA_LAB_NAME-node" || true); do
        in_netns lxc-stop --kill --name "$name" 2>/dev/null || true
      done
      in_netns vagrant destroy -f "${@:2}"
    fi
    # the namespace (with its bridge and the nodes' veth ends) goes once no node is left
    if [ -z "$(lxc-ls -1 2>/dev/null | grep "^$PHA_LAB_NAME-node" || true)" ]; then
      ip netns del "$NETNS" 2>/dev/null || true
    fi;;
  in-netns)
    in_netns "${@:2}";;
  "")
    sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 2;;
  *)
    [ -e "/run/netns/$NETNS" ] || { echo "lab.sh: no lab (run lab.sh up)" >&2; exit 1; }
    in_netns vagrant "$@";;
esac
