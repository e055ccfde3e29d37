"""ocf:pha:vip and pha.net without touching the host's network: bad interface names and
labels are refused before any netlink request, and a failed request names the kernel's
errno and message. (The agent against real interfaces: tests/lab/test_vip.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from pha import net, ocf
from pha.agents import vip

pytestmark = pytest.mark.unit

BAD_NICS = ["e" * 65536, "eth\udcff0", "eth0\n", "eth0:1", "a" * 16, "../lo", "eth 0", "ethé"]


def run(action: str, capsys: pytest.CaptureFixture, **params: str) -> tuple[int, str]:
    env = {"OCF_RESOURCE_INSTANCE": "vip-test", **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    rc = vip.AGENT.run([action], env=env)
    return rc, capsys.readouterr().err


@pytest.fixture
def no_netlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any netlink request from the agent fails the test: bad input stops before one."""
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("netlink asked")
    for name in ("get_link", "route_nic", "covering_prefix", "addresses", "has_address", "add_address",
                 "del_address", "gratuitous_arp"):
        monkeypatch.setattr(net, name, forbidden)


@pytest.mark.parametrize("nic", BAD_NICS, ids=range(len(BAD_NICS)))
@pytest.mark.parametrize("action", ["start", "monitor", "validate-all"])
def test_bad_nic_is_err_configured(nic: str, action: str, capsys: pytest.CaptureFixture, no_netlink: None) -> None:
    rc, err = run(action, capsys, ip="10.78.0.200", nic=nic)
    assert rc == ocf.ERR_CONFIGURED
    reason = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(reason) == 1 and "parameter nic=" in reason[0] and "not a network interface name" in reason[0]


@pytest.mark.parametrize("nic", BAD_NICS, ids=range(len(BAD_NICS)))
def test_stop_with_a_bad_nic_succeeds_without_a_traceback(nic: str, capsys: pytest.CaptureFixture,
                                                          no_netlink: None) -> None:
    rc, err = run("stop", capsys, ip="10.78.0.200", nic=nic)
    assert rc == ocf.SUCCESS and "stop with invalid parameters" in err


def test_bad_nic_in_a_real_process_exits_6_and_stop_0() -> None:
    """Through the process's own environment (invalid UTF-8 arrives as surrogate escapes)."""
    code = "import sys; from pha.agents import vip; sys.exit(vip.AGENT.run(sys.argv[1:]))"
    for nic in (b"e" * 65536, b"eth\xff0"):
        env = {b"OCF_RESKEY_ip": b"10.78.0.200", b"OCF_RESKEY_nic": nic, b"PATH": b"/usr/bin:/bin"}
        for action, expected in (("start", ocf.ERR_CONFIGURED), ("stop", ocf.SUCCESS)):
            done = subprocess.run([sys.executable, "-c", code, action], env=env, capture_output=True, timeout=60)
            assert done.returncode == expected, done.stderr[-2000:]
            assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("label", ["vip\n", "a" * 15, "v:ip", "v ip", "vïp"])
def test_bad_label_is_err_configured(label: str, capsys: pytest.CaptureFixture, no_netlink: None) -> None:
    rc, err = run("start", capsys, ip="10.78.0.200", nic="eth0", label=label)
    assert rc == ocf.ERR_CONFIGURED and "parameter label=" in err


def test_netlink_failure_keeps_the_kernels_errno_and_message() -> None:
    from pyroute2.netlink.exceptions import NetlinkError
    with pytest.raises(net.NetError, match=r"^adding 10.0.0.9/24 to eth0: EEXIST File exists$"):
        with net._netlink("adding 10.0.0.9/24 to eth0"):
            raise NetlinkError(17)
    with pytest.raises(net.NetError, match=r"^x: EINVAL prefix too long$"):
        with net._netlink("x"):
            raise NetlinkError(22, "prefix too long")


def test_start_failing_in_netlink_is_err_generic_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    def refused(nic: str, address: str, prefixlen: int, label: object = None) -> None:
        raise net.NetError(f"adding {address}/{prefixlen} to {nic}: EPERM Operation not permitted")
    monkeypatch.setattr(net, "get_link", lambda name: net.Link(name, 2, True, True, "02:00:00:00:00:01"))
    monkeypatch.setattr(net, "add_address", refused)
    rc, err = run("start", capsys, ip="10.78.0.200", nic="eth0", cidr_netmask="24")
    assert rc == ocf.ERR_GENERIC
    assert "ocf-exit-reason:adding 10.78.0.200/24 to eth0: EPERM Operation not permitted" in err
