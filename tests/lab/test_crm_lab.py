"""pha.crm against the real Pacemaker of a lab node (2.1 on Debian 12, 3.0 on Debian 13).

Each test runs crm.py's functions inside a lab node (lab.python) and checks
the result there and, where it matters, in the CIB itself (cibadmin).
"""
from __future__ import annotations

import json
import textwrap
import time

import pytest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_options() -> dict:
    """No PostgreSQL needed here; a short token makes the quorum test quick."""
    return {"pg": False, "token_ms": 1000}


PREFIX = "from pha import crm\nimport json\nc = crm.Crm()\n"


def crm_in(lab, node: str, body: str):
    """Run `body` (with `c = crm.Crm()`) in `node`; return what it printed as JSON."""
    proc = lab.python(node, PREFIX + textwrap.dedent(body), timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cib_has(lab, node: str, xpath: str) -> bool:
    proc = lab.exec(node, ["cibadmin", "--query", f"--xpath={xpath}"], check=False)
    return proc.returncode == 0


@pytest.mark.parametrize("lifetime, section", [
    ("reboot", "//status/node_state/transient_attributes"),
    ("forever", "//configuration/nodes/node"),
])
def test_node_attribute_round_trip(lab, lifetime: str, section: str) -> None:
    name = f"pha-test-{lifetime}"
    node1, node2 = lab.nodes[0], lab.nodes[1]
    got = crm_in(lab, node1, f"""
        before = c.get_node_attr({name!r}, lifetime={lifetime!r})
        c.set_node_attr({name!r}, "-5 a|b", lifetime={lifetime!r})
        c.set_node_attr({name!r}, "other", node={node2!r}, lifetime={lifetime!r})
        mine = c.get_node_attr({name!r}, lifetime={lifetime!r})
        theirs = c.get_node_attr({name!r}, node={node2!r}, lifetime={lifetime!r})
        print(json.dumps([before, mine, theirs]))
    """)
    assert got == [None, "-5 a|b", "other"]
    assert cib_has(lab, node1, f"{section}//nvpair[@name='{name}'][@value='-5 a|b']")
    other = "forever" if lifetime == "reboot" else "reboot"
    got = crm_in(lab, node2, f"""
        seen = c.get_node_attr({name!r}, node={node1!r}, lifetime={lifetime!r})
        wrong_lifetime = c.get_node_attr({name!r}, lifetime={other!r})
        c.delete_node_attr({name!r}, node={node1!r}, lifetime={lifetime!r})
        c.delete_node_attr({name!r}, lifetime={lifetime!r})
        c.delete_node_attr({name!r}, lifetime={lifetime!r})  # already gone: no error
        print(json.dumps([seen, wrong_lifetime,
                          c.get_node_attr({name!r}, node={node1!r}, lifetime={lifetime!r}),
                          c.get_node_attr({name!r}, lifetime={lifetime!r})]))
    """)
    assert got == ["-5 a|b", None, None, None]
    assert not cib_has(lab, node1, f"//nvpair[@name='{name}']")


def test_transient_batch_and_unknown_node(lab) -> None:
    got = crm_in(lab, lab.nodes[0], """
        c.set_transient_attrs({"pha-a": 1, "pha-b": "HS:sync"})
        values = [c.get_node_attr(n, lifetime="reboot") for n in ("pha-a", "pha-b")]
        c.set_transient_attrs({"pha-a": None, "pha-b": None})
        gone = [c.get_node_attr(n, lifetime="reboot") for n in ("pha-a", "pha-b")]
        try:
            c.get_node_attr("pha-a", node="no-such-node", lifetime="reboot")
            error = None
        except crm.CrmError as exc:
            error = str(exc)
        print(json.dumps([values, gone, error]))
    """)
    values, gone, error = got
    assert values == ["1", "HS:sync"] and gone == [None, None]
    assert "--node=no-such-node" in error and "Could not map name=no-such-node" in error


def test_promotion_score_minus_infinity_round_trip(lab) -> None:
    node1, node2 = lab.nodes[0], lab.nodes[1]
    got = crm_in(lab, node1, f"""
        out = [c.get_promotion_score("pha-rsc")]
        c.set_promotion_score("-INFINITY", resource="pha-rsc")
        out.append(c.get_promotion_score("pha-rsc"))
        out.append(c.get_node_attr("master-pha-rsc", lifetime="reboot"))
        c.set_promotion_score(-100, resource="pha-rsc", node={node2!r})
        out.append(c.get_promotion_score("pha-rsc", node={node2!r}))
        c.set_promotion_score("INFINITY", resource="pha-rsc", node={node2!r})
        out.append(c.get_promotion_score("pha-rsc", node={node2!r}))
        c.delete_promotion_score("pha-rsc")
        c.delete_promotion_score("pha-rsc", node={node2!r})
        out += [c.get_promotion_score("pha-rsc"), c.get_promotion_score("pha-rsc", node={node2!r})]
        print(json.dumps(out))
    """)
    assert got == [None, -1000000, "-INFINITY", -100, 1000000, None, None]


def test_promotion_score_from_agent_environment(lab) -> None:
    got = crm_in(lab, lab.nodes[0], """
        import os
        os.environ["OCF_RESOURCE_INSTANCE"] = "pha-env"
        c.set_promotion_score("-INFINITY")
        out = [c.get_promotion_score(), c.get_node_attr("master-pha-env", lifetime="reboot")]
        c.delete_promotion_score()
        out.append(c.get_promotion_score())
        print(json.dumps(out))
    """)
    assert got == [-1000000, "-INFINITY", None]


def test_property_set_round_trip(lab) -> None:
    node1, node3 = lab.nodes[0], lab.nodes[-1]
    got = crm_in(lab, node1, """
        out = [c.get_property("REPL_INFO", set_name="pha-test")]
        c.set_property("REPL_INFO", "node1|0/3000000|2", set_name="pha-test")
        out.append(c.get_property("REPL_INFO", set_name="pha-test"))
        print(json.dumps(out))
    """)
    assert got == [None, "node1|0/3000000|2"]
    assert cib_has(lab, node1, "//crm_config/cluster_property_set[@id='pha-test']"
                               "/nvpair[@name='REPL_INFO'][@value='node1|0/3000000|2']")
    got = crm_in(lab, node3, """
        out = [c.get_property("REPL_INFO", set_name="pha-test")]
        c.delete_property("REPL_INFO", set_name="pha-test")
        c.delete_property("REPL_INFO", set_name="pha-test")
        out.append(c.get_property("REPL_INFO", set_name="pha-test"))
        print(json.dumps(out))
    """)
    assert got == ["node1|0/3000000|2", None]


def test_crm_node_and_crm_mon(lab) -> None:
    for node in lab.nodes:
        got = crm_in(lab, node, """
            st = crm.crm_mon()
            print(json.dumps([c.local_node_name(), c.partition_members(), c.has_quorum(),
                              st.online_nodes(), st.summary.quorum, st.summary.dc,
                              st.summary.pacemakerd_state, st.summary.fencing_enabled]))
        """)
        name, members, quorum, online, mon_quorum, dc, pacemakerd, fencing = got
        assert name == node
        assert sorted(members) == sorted(online) == sorted(lab.nodes)
        assert quorum is True and mon_quorum is True and dc in lab.nodes
        assert pacemakerd == "running"      # <pacemakerd state> in 2.1, <stack pacemakerd-state> in 3.0
        assert fencing is False             # stonith-enabled, or fencing-enabled since 3.0.2


def quorum_view(lab, node: str, want_quorum: bool, timeout: float = 60) -> list:
    """Poll `node` until has_quorum() is `want_quorum`; return [quorum, partition]."""
    deadline = time.monotonic() + timeout
    while True:
        got = crm_in(lab, node, "print(json.dumps([c.has_quorum(), c.partition_members()]))")
        if got[0] is want_quorum or time.monotonic() > deadline:
            return got
        time.sleep(1)


def test_isolated_node_loses_quorum(lab) -> None:
    victim = lab.nodes[-1]
    lab.cut(victim)
    try:
        assert quorum_view(lab, victim, False) == [False, [victim]]
    finally:
        lab.heal(victim)
        lab.wait_online()
    quorum, members = quorum_view(lab, victim, True)
    assert quorum is True and sorted(members) == sorted(lab.nodes)
