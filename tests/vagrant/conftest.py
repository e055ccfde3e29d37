"""The Vagrant lab as a test fixture: vagrant/lab.sh (vagrant-lxc in a network namespace of its own).

Needs root and Debian's vagrant, vagrant-lxc, lxc and debootstrap; installs them with apt-get when
they are missing (CI starts from a fresh machine). The box is built once and cached in
PHA_VAGRANT_CACHE (/var/cache/pha-vagrant), keyed by its inputs; the wheelhouse is built per run
from this checkout. Skips, with the reason, where the container provider cannot run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Iterator, Optional

import pytest
from vagrant_lab import LAB_DIR, VagrantLab

PACKAGES = ("vagrant", "vagrant-lxc", "lxc", "debootstrap")
COMMANDS = ("vagrant", "lxc-start", "lxc-attach", "debootstrap", "nsenter", "unshare")
UP_TIMEOUT = 900


def _missing_packages() -> list[str]:
    missing = []
    for package in PACKAGES:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package],
                              capture_output=True, text=True)
        if "install ok installed" not in done.stdout:
            missing.append(package)
    return missing


def _in_chroot() -> bool:
    try:
        root, init_root = os.stat("/"), os.stat("/proc/1/root")
    except OSError:
        return False    # init's root cannot be looked at (some sandboxes): assume the real one
    return (root.st_dev, root.st_ino) != (init_root.st_dev, init_root.st_ino)


def provider_problem() -> Optional[str]:
    """Why vagrant-lxc cannot run here (None: it can), after installing what is missing."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the Vagrant lab needs root on Linux (LXC containers, network namespaces)"
    if _in_chroot():
        return "the Vagrant lab runs on the machine's own root file system, not in a chroot (tools/rootfs.sh)"
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        return "the Vagrant lab installs its tools with apt-get (Debian)"
    missing = _missing_packages()
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            return f"apt-get install {' '.join(missing)} failed: {done.stdout[-300:]}{done.stderr[-300:]}"
    absent = [c for c in COMMANDS if shutil.which(c) is None]
    if absent:
        return f"not found after installing {' '.join(PACKAGES)}: {' '.join(absent)}"
    if not os.path.isdir("/sys/fs/cgroup") or not os.listdir("/sys/fs/cgroup"):
        return "no cgroup file system at /sys/fs/cgroup: systemd cannot run in a container"
    probe = subprocess.run(["unshare", "--net", "--mount", "--propagation", "slave", "sh", "-c",
                            "umount -l /sys && mount -t sysfs sysfs /sys"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace with its own sysfs: {probe.stderr.strip()}"
    return None


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


@pytest.fixture(scope="module")
def vagrant_lab() -> Iterator[VagrantLab]:
    """A healthy 3-node pha cluster from `vagrant up`; destroyed afterwards, with nothing left."""
    problem = provider_problem()
    if problem:
        pytest.skip(problem)
    LAB_DIR.parent.mkdir(parents=True, exist_ok=True)
    lab = VagrantLab()
    lab.log.write_text("")
    if lab.leftovers():
        lab.lab("destroy", timeout=300)          # an earlier run that was cut short
    shutil.rmtree(LAB_DIR, ignore_errors=True)
    links_before = _host_links()
    try:
        start = time.monotonic()
        lab.lab("prepare", timeout=UP_TIMEOUT)     # the box (cached), the wheelhouse, the namespace
        lab.timings["prepare_s"] = round(time.monotonic() - start, 1)
        start = time.monotonic()
        lab.lab("up", timeout=UP_TIMEOUT)
        lab.timings["vagrant_up_s"] = round(time.monotonic() - start, 1)
        lab.wait_for("pha status healthy on node1",
                     lambda: lab.run("node1", "pha", "status", "--brief", check=False).returncode == 0,
                     timeout=180)
        lab.timings["up_to_healthy_s"] = round(time.monotonic() - start, 1)
        yield lab
    finally:
        pids = lab.netns_pids()
        destroy_start = time.monotonic()
        try:
            lab.lab("destroy", timeout=300)
        finally:
            lab.timings["destroy_s"] = round(time.monotonic() - destroy_start, 1)
            lab.log.with_suffix(".json").write_text(json.dumps(lab.timings, indent=2))
            print(f"\nvagrant lab timings: {json.dumps(lab.timings)} (log {lab.log})")
    leftovers = lab.leftovers() + [f"process {pid} of the namespace" for pid in pids
                                   if os.path.exists(f"/proc/{pid}")]
    new_links = _host_links() - links_before
    assert not leftovers and not new_links, f"vagrant destroy left {leftovers} and host links {new_links}"
    shutil.rmtree(LAB_DIR, ignore_errors=True)
