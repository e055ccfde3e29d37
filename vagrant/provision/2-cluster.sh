#!/bin/bash
# Install guide, step 2, on every node: names, corosync.conf (pcs's local mode: the same file on
# every node, no pcsd needed), the shared authkey, then corosync and pacemaker.
# Environment: PHA_NODE (this node's number), PHA_IPS (the nodes' addresses, comma separated),
# PHA_SHARED (holds corosync-authkey).
set -euo pipefail
CLUSTER=phalab
IFS=, read -ra IPS <<< "$PHA_IPS"
me=node$PHA_NODE

for k in "${!IPS[@]}"; do
  name=node$((k + 1))
  sed -i "/[[:space:]]$name\$/d" /etc/hosts
  echo "${IPS[k]} $name" >> /etc/hosts
done
if [ "$(hostname)" != "$me" ]; then echo "$me" > /etc/hostname; hostname "$me"; fi

nodes=()
for k in "${!IPS[@]}"; do nodes+=("node$((k + 1))" "addr=${IPS[k]}"); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
conf=$work/corosync.conf
# (pcs warns that pcsd's known-hosts file is missing: local mode does not use it)
pcs cluster setup "$CLUSTER" "${nodes[@]}" --no-cluster-uuid --corosync_conf "$conf" >"$work/log" 2>&1 ||
  { cat "$work/log" >&2; exit 1; }

# Debian starts corosync and pacemaker on install with a one-node configuration of their own:
# a node that is not yet in this cluster drops that configuration before it joins.
if ! grep -qs "cluster_name: $CLUSTER\$" /etc/corosync/corosync.conf; then
  systemctl stop pacemaker corosync
  rm -f /var/lib/pacemaker/cib/cib*
fi
install -m 400 "$PHA_SHARED/corosync-authkey" /etc/corosync/authkey
if ! cmp -s "$conf" /etc/corosync/corosync.conf; then
  install -m 644 "$conf" /etc/corosync/corosync.conf
  systemctl restart corosync
fi
systemctl enable -q corosync pacemaker
systemctl start corosync pacemaker
echo "$me: corosync and pacemaker started ($CLUSTER: ${#IPS[@]} nodes)"
