#!/bin/bash
# Build the vagrant-lxc box of the container lab: a Debian 12 root file system (debootstrap) with
# systemd, sshd, a `vagrant` user (Vagrant's insecure key, password-less sudo) and the packages of
# the install guide's step 1 already in it, since the lab's nodes have no network.
#
#   vagrant/box/build.sh [CACHE]      (as root; CACHE defaults to /var/cache/pha-vagrant)
#
# Needs debootstrap, vagrant (for its insecure public key) and a Debian mirror (the one apt uses
# here, or PHA_BOX_MIRROR / PHA_BOX_SECURITY). The box is cached as CACHE/pha-bookworm-lxc-KEY.box,
# KEY a hash of its inputs (this script, packages.txt, lxc-config, suite and mirrors): a second
# run with the same inputs does nothing.
# Prints the box's path on its last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:-${PHA_VAGRANT_CACHE:-/var/cache/pha-vagrant}}
SUITE=${PHA_BOX_SUITE:-bookworm}
# The mirrors apt uses on this machine (a CI machine's own mirror, say), else Debian's.
apt_mirror() {
  sed -n -e 's/^[[:space:]]*deb[[:space:]]//p' -e 's/^[[:space:]]*URIs://p' /etc/apt/sources.list \
      /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    tr -s ' \t' '\n' | grep -E '^(https?|file)://' | sed 's:/*$::' | grep -m1 -E "/$1\$" || true
}
MIRROR=${PHA_BOX_MIRROR:-$(apt_mirror debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${PHA_BOX_SECURITY:-$(apt_mirror debian-security)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

mapfile -t PACKAGES < <(sed 's/#.*//' "$HERE/packages.txt" | tr -s ' \t' '\n' | sed '/^$/d')
KEY=$(cat "$0" "$HERE/packages.txt" "$HERE/lxc-config" <(echo "$SUITE $MIRROR $SECURITY") |
      sha256sum | cut -c1-12)
BOX=$CACHE/pha-$SUITE-lxc-$KEY.box
if [ -s "$BOX" ]; then echo "box up to date"; echo "$BOX"; exit 0; fi

VAGRANT_KEY=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)
[ -n "$VAGRANT_KEY" ] || { echo "vagrant's insecure public key not found: install vagrant" >&2; exit 1; }
WORK=$CACHE/build-$KEY
ROOT=$WORK/rootfs
mkdir -p "$CACHE"
rm -rf "$WORK"; mkdir -p "$WORK"
cleanup() { umount "$ROOT/proc" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

t0=$SECONDS
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,iputils-ping,procps,ca-certificates \
  "$SUITE" "$ROOT" "$MIRROR" >"$WORK.debootstrap.log" 2>&1 ||
  { tail -20 "$WORK.debootstrap.log" >&2; exit 1; }
echo "debootstrap: $((SECONDS - t0)) s"

# Step 1 of the install guide, done here once: the packages (no service starts inside the chroot;
# no "main" PostgreSQL cluster: `pha`'s cluster is made by the provisioning, as in the guide).
cat > "$ROOT/etc/apt/sources.list" <<LIST
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
LIST
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mkdir -p "$ROOT/etc/postgresql-common"
echo "create_main_cluster = false" > "$ROOT/etc/postgresql-common/createcluster.conf"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive sh -ec '
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$@"
  apt-get clean
  rm -rf /var/lib/apt/lists/*' sh "${PACKAGES[@]}" >"$WORK.apt.log" 2>&1 ||
  { tail -20 "$WORK.apt.log" >&2; exit 1; }
umount "$ROOT/proc"
echo "packages: $((SECONDS - t0)) s"

# The vagrant user Vagrant logs in as.
chroot "$ROOT" sh -ec 'useradd -m -s /bin/bash vagrant; install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh'
install -m 600 "$VAGRANT_KEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
chroot "$ROOT" chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$ROOT/etc/sudoers.d/vagrant"; chmod 440 "$ROOT/etc/sudoers.d/vagrant"
echo 'UseDNS no' > "$ROOT/etc/ssh/sshd_config.d/vagrant.conf"
# Host keys are made by each node at its first boot, never shared through the box.
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat > "$ROOT/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate the ssh host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-hostkeys.service "$ROOT/etc/systemd/system/multi-user.target.wants/"
# Units that have nothing to do in a container.
for unit in getty@tty1.service serial-getty@.service console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-modules-load.service sys-kernel-debug.mount \
    sys-kernel-tracing.mount systemd-remount-fs.service systemd-firstboot.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# The provisioning configures and starts the cluster stack (Debian enables it with a 1-node
# default configuration); pcsd is not used: the guide makes corosync.conf with pcs's local mode.
for unit in corosync pacemaker pcsd pcsd-ruby; do
  [ -e "$ROOT/lib/systemd/system/$unit.service" ] && chroot "$ROOT" systemctl disable -q "$unit"
done
rm -f "$ROOT/var/lib/pacemaker/cib/"cib* "$ROOT/etc/corosync/corosync.conf"
echo debian > "$ROOT/etc/hostname"          # debootstrap copied the build host's
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf"
: > "$ROOT/etc/machine-id"                  # a new one per node at first boot

# The vagrant-lxc box: metadata.json, lxc-config and rootfs.tar.gz whose entries are ./rootfs/...
# (the plugin's template strips two components).
tar -C "$WORK" --numeric-owner -I 'gzip -1' -cf "$WORK/rootfs.tar.gz" ./rootfs
printf '{"provider": "lxc", "version": "1.0.0", "built-on": "pha vagrant/box/build.sh %s"}\n' "$KEY" \
  > "$WORK/metadata.json"
cp "$HERE/lxc-config" "$WORK/lxc-config"
tar -C "$WORK" -cf "$BOX.tmp" metadata.json lxc-config rootfs.tar.gz
mv "$BOX.tmp" "$BOX"
rm -f "$WORK".*.log
# older boxes of this lab are superseded
find "$CACHE" -maxdepth 1 -name "pha-$SUITE-lxc-*.box" ! -name "$(basename "$BOX")" -delete
echo "box built in $((SECONDS - t0)) s ($(du -m "$BOX" | cut -f1) MB)"
echo "$BOX"
