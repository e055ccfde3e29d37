#!/bin/bash
# Install guide, step 1 (README.md, "Install on real servers"), on every node: the packages, pha in
# a virtual environment from the wheelhouse (vagrant/build-wheels.sh), pha's agents.
# Environment (from the Vagrantfile): PHA_SHARED, the directory holding wheelhouse/.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(corosync pacemaker pacemaker-cli-utils pcs resource-agents postgresql python3-venv)
WHEELHOUSE=$PHA_SHARED/wheelhouse
VENV=/opt/pha

# pha makes its own PostgreSQL cluster (step 3): no Debian "main" cluster on install.
mkdir -p /etc/postgresql-common
grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
  echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ -x $VENV/bin/python ] || python3 -m venv $VENV
$VENV/bin/pip install -q --disable-pip-version-check --no-index --find-links "$WHEELHOUSE" \
  --force-reinstall pha
for command in $VENV/bin/pha $VENV/bin/cls_* $VENV/bin/get_active_slaves $VENV/bin/check_active_slave; do
  ln -sf "$command" /usr/local/sbin/
done
pha install-agents
# pha guard (install guide, step 5): the unit as templates/ has it, enabled before Pacemaker has a primary
install -m 0644 "$PHA_SHARED/pha-guard.service" /etc/systemd/system/pha-guard.service
systemctl daemon-reload
systemctl enable --now pha-guard
echo "$(hostname): pha $($VENV/bin/python -c 'import pha; print(pha.__version__)') installed in $VENV"
