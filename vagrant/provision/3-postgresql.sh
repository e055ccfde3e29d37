#!/bin/bash
# Install guide, step 3: PostgreSQL. node1 makes the cluster and runs it as the primary; every
# other node copies it with pg_basebackup and leaves it stopped (the pgsql agent starts it as a
# standby and writes its recovery settings). `pha setup` (step 4) takes the running primary over.
# Environment: PHA_NODE, PHA_IPS, PHA_PREFIX (prefix length of the nodes' network).
# Lab shortcut: the nodes' network is trusted (pg_hba.conf); on real servers use scram-sha-256
# and a passfile (config.ini: pgsql_passfile, pgsql_reppassword).
set -euo pipefail
IFS=, read -ra IPS <<< "$PHA_IPS"
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
BIN=/usr/lib/postgresql/$VERSION/bin
PGDATA=/var/lib/postgresql/$VERSION/pha
LOG=/var/log/postgresql/postgresql-$VERSION-pha.log
NETWORK=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_network(sys.argv[1], strict=False))' \
          "${IPS[0]}/$PHA_PREFIX")
as_postgres() { runuser -u postgres -- "$@"; }

# (pgsql_tmpdir, the agent's own state, is made by the agent: root's, mode 0700)
install -d -o postgres -g postgres /var/log/postgresql /run/postgresql
if [ -e "$PGDATA/PG_VERSION" ]; then
  echo "node$PHA_NODE: $PGDATA exists"
elif [ "$PHA_NODE" = 1 ]; then
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=peer \
    --auth-host=scram-sha-256 --no-instructions >/dev/null
  cat >> "$PGDATA/postgresql.conf" <<CONF
# --- pha ---
listen_addresses = '*'
port = 5432
unix_socket_directories = '/run/postgresql'
wal_level = replica
hot_standby = on
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 128MB
wal_log_hints = on
CONF
  printf 'host all all %s trust\nhost replication all %s trust\n' "$NETWORK" "$NETWORK" >> "$PGDATA/pg_hba.conf"
  as_postgres "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 start >/dev/null
  echo "node1: PostgreSQL $VERSION primary running in $PGDATA"
else
  for _ in $(seq 300); do "$BIN/pg_isready" -q -h "${IPS[0]}" -p 5432 && break; sleep 1; done
  as_postgres "$BIN/pg_basebackup" -h "${IPS[0]}" -p 5432 -U postgres -D "$PGDATA" -X stream -c fast
  echo "node$PHA_NODE: PostgreSQL $VERSION copied from node1 into $PGDATA (stopped)"
fi
