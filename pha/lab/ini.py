"""A `lab = yes` config.ini: what it leaves unset, and where its commands run.

pha.config knows nothing of the lab: the commands that load a config pass
`defaults` (pha.config.load's lab_defaults), which fills in the lab's VIPs,
interface and BMCs on this machine (PHA_LAB_INSTANCE, PHA_LAB_STATE).
"""
from __future__ import annotations

import subprocess
from typing import Sequence

from pha import crm
from pha.config import Config
from pha.configschema import Value
from pha.deploy import SetupError
from pha.lab import config as lab
from pha.lab import fence


def defaults(values: dict[str, Value]) -> None:
    """A lab config: VIPs and interface of the lab on this machine, and its BMCs (or fencing=none
    when the lab that is up runs without them)."""
    if values.get("writer_vip") is None:
        values["writer_vip"] = lab.vip(0)
    if values.get("reader_vip") is None:
        values["reader_vip"] = lab.vip(1)
    if values.get("vip_nic") is None:
        values["vip_nic"] = lab.NODE_IFNAME
    if values.get("fencing") is None:
        fence.config_defaults(values)  # type: ignore[arg-type]


def runner(config: Config) -> tuple[crm.Runner, str]:
    """How a `lab = yes` config's Pacemaker commands run: in its lab_node, and that node's name."""
    from pha.lab.core import Lab, LabError
    try:
        up = Lab.load()
    except LabError as exc:
        raise SetupError(f"{config.path}: lab = yes, but {exc}") from None
    node = str(config["lab_node"])
    if node not in up.nodes:
        raise SetupError(f"{config.path}: lab_node={node}: the lab has {', '.join(up.nodes)}")

    def run(argv: Sequence[str], timeout: float) -> crm.CommandResult:
        try:
            done = up.exec(node, list(argv), check=False, timeout=timeout, env={"LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"timed out after {timeout:g}s") from None
        return crm.CommandResult(done.returncode, done.stdout, done.stderr)
    return run, f"lab {node}"
