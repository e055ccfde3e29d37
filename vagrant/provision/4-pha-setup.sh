#!/bin/bash
# Install guide, step 4, on one node once every node is through steps 1-3: config.ini, then
# `pha setup` (it pushes the configuration, waits until the cluster is healthy, shows its status).
# Each node says it is ready with a transient node attribute, so the order in which Vagrant
# brings the machines up does not matter: the last node does the setup.
# Environment: PHA_NODE, PHA_IPS, PHA_WRITER_VIP, PHA_READER_VIP, PHA_PREFIX.
set -euo pipefail
READY=pha-lab-ready
IFS=, read -ra IPS <<< "$PHA_IPS"
n=${#IPS[@]}
for _ in $(seq 120); do attrd_updater -n $READY -U yes 2>/dev/null && break; sleep 1; done
[ "$PHA_NODE" = "$n" ] || exit 0

for waited in $(seq 600); do
  ready=$(attrd_updater -Q -A -n $READY 2>/dev/null | grep -c 'value="yes"' || true)
  [ "$ready" = "$n" ] && break
  sleep 1
done
echo "node$PHA_NODE: $ready/$n nodes ready (waited $waited s)"
# `pha setup` edits a copy of the CIB and pushes the difference: before a DC is elected, the DC's
# own first write (cib-bootstrap-options) would collide with it. Wait for a DC and every node.
/opt/pha/bin/python - "$n" <<'PY'
import sys, time
from pha import crm
want, bridge, deadline = int(sys.argv[1]), crm.Crm(timeout=20.0), time.monotonic() + 300
while True:
    try:
        view = bridge.status()
        online = [node.name for node in view.nodes if node.online]
        if view.summary.dc and view.summary.quorum and len(online) == want:
            print(f"DC {view.summary.dc}, online: {' '.join(online)}")
            break
    except (crm.CrmError, ValueError):
        pass
    if time.monotonic() > deadline:
        sys.exit("no DC with every node online after 300 s")
    time.sleep(1)
PY
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
PGDATA=/var/lib/postgresql/$VERSION/pha
# the VIPs go on the interface that holds the node's own address (eth1 on VirtualBox, eth0 in LXC)
NIC=$(ip -o -4 addr show | awk -v ip="${IPS[n - 1]}/" 'index($4, ip) == 1 {print $2; exit}')
mkdir -p /etc/pha
cat > /etc/pha/config.ini <<INI
# pha's 3-node Vagrant lab (written by vagrant/provision/4-pha-setup.sh)
pcs_template=muti
$(for k in $(seq "$n"); do echo "node$k=node$k"; done)
writer_vip=$PHA_WRITER_VIP
reader_vip=$PHA_READER_VIP
vip_nic=$NIC
vip_cidr_netmask=$PHA_PREFIX
# no fence device in a lab (vagrant/README.md, "Fencing"): said on purpose
fencing=none
pgsql_pgctl=/usr/lib/postgresql/$VERSION/bin/pg_ctl
pgsql_pgdata=$PGDATA
pgsql_config=$PGDATA/postgresql.conf
pgsql_pgport=5432
pgsql_socketdir=/run/postgresql
pgsql_logfile=/var/log/postgresql/postgresql-$VERSION-pha.log
pgsql_tmpdir=/var/lib/postgresql/tmp
pgsql_rep_mode=sync
pgsql_repuser=postgres
INI
for k in $(seq "$n"); do crm_attribute -N "node$k" -n $READY -l reboot -D -q 2>/dev/null || true; done
pha setup --timeout 300 /etc/pha/config.ini     # ends with pha status's summary
