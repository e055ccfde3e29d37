"""The lab fences for real: each node has a BMC (OpenIPMI's ipmi_sim) on the lab switch, and the
cluster fences with the stock fence_ipmilan against it, as on real servers (pha.lab.fence).

`stonith_admin --reboot` through the real device powers the node off (its processes die, its NIC
leaves the switch) and on again; the node rejoins. The BMC answers inside the lab only, and its
password is nowhere in the CIB.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from pha.lab import fence

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"fence": True, "pg": False}


def test_the_cluster_fences_through_the_bmc(lab, record_property) -> None:
    view = lab.view("node1")
    assert view.summary.fencing_enabled
    devices = {r.id: r.agent for r in view.resources}
    assert devices == {f"fence-{n}": "stonith:fence_ipmilan" for n in lab.nodes}
    assert all(fence.power_status(lab, n) for n in lab.nodes)

    old_init = lab.info["nodes"]["node3"]["pid"]
    t0 = time.monotonic()
    done = lab.exec("node1", ["stonith_admin", "--reboot", "node3", "--timeout", "120"], check=False, timeout=150)
    fenced = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    record_property("stonith_admin_reboot_s", round(fenced, 2))
    history = lab.exec("node1", ["stonith_admin", "--history", "node3"]).stdout
    assert "reboot of node3 successful" in history or "successful" in history, history
    lab.wait_offline(["node3"], timeout=30, observer="node1")
    lab.wait_online(timeout=120, observer="node1")
    back = time.monotonic() - t0
    record_property("fenced_node_back_s", round(back, 2))
    booted = json.loads((lab.state_dir / "lab.json").read_text())["nodes"]["node3"]["pid"]
    assert booted != old_init        # a new boot, not the same processes
    print(f"stonith_admin --reboot node3: fenced in {fenced:.1f}s, node3 online again {back:.1f}s after")


def test_the_bmc_is_reachable_only_inside_the_lab(lab) -> None:
    password_file = str(lab.state_dir / fence.BMC_DIR / "password")
    outside = subprocess.run([fence.IPMITOOL, "-I", "lanplus", "-C", "3", "-H", fence.bmc_ip("node1"), "-U",
                              fence.BMC_USER, "-f", password_file, "-N", "1", "-R", "1", "chassis", "power",
                              "status"], capture_output=True, text=True, timeout=30)
    assert outside.returncode != 0     # the host's blackhole route: no lab address from outside
    password = (lab.state_dir / fence.BMC_DIR / "password").read_text().strip()
    cib = lab.exec("node1", ["cibadmin", "--query"]).stdout
    assert password not in cib and "password_script" in cib
