"""pha.pgsql.peers' own pieces: IDENTIFY_SYSTEM's answer as psycopg hands it over on a
replication connection (bytes), the peers' addresses and the options a promotion asks them with.
Promotions through them are in test_pgsql_promotion.py."""
from __future__ import annotations

import socket

import pytest

from pha.lvs import hosts
from pha.pgsql import decide, peers

pytestmark = pytest.mark.unit


class Answer:
    def __init__(self, row: tuple) -> None:
        self.row = row
        self.ran: list[str] = []

    def execute(self, query: str) -> "Answer":
        self.ran.append(query)
        return self

    def fetchone(self) -> tuple:
        return self.row


@pytest.mark.parametrize("row", [
    (b"7301234567890123456", b"3", b"0/5000060", None),        # a replication connection: bytes
    ("7301234567890123456", 3, "0/5000060", None),             # typed columns
    (memoryview(b"7301234567890123456"), b"3", bytearray(b"0/5000060"), None),
])
def test_identify_reads_system_timeline_and_position(row) -> None:
    conn = Answer(row)
    assert peers.identify(conn) == peers.Identity("7301234567890123456", decide.Position(3, 0x5000060))
    assert conn.ran == ["IDENTIFY_SYSTEM"]


def test_addresses_take_the_ring_address_and_ask_the_resolver_only_for_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def resolve(name: str) -> list[str]:
        asked.append(name)
        if name == "node4":
            return ["192.0.2.4"]
        raise socket.gaierror("Name or service not known")
    monkeypatch.setattr(hosts, "cluster_nodes", lambda: {"node2": ["10.0.0.2", "10.1.0.2"], "node3": []})
    monkeypatch.setattr(hosts, "system_resolver", resolve)
    assert peers.addresses(["node2", "node3", "node4"]) == {"node2": "10.0.0.2", "node3": None, "node4": "192.0.2.4"}
    assert asked == ["node3", "node4"]


class Params:
    """Just enough of a Ctx for peer_conninfo."""

    def __init__(self, **params: str) -> None:
        self.params = {"pgport": 5433, "repuser": "replicator", "primary_conninfo_opt": "sslmode=require",
                       "passfile": "", **params}


def test_peer_conninfo_is_a_replication_connection_without_a_password() -> None:
    conninfo = peers.peer_conninfo(Params(), "node1")     # type: ignore[arg-type]
    assert conninfo == ("port=5433 user=replicator replication=true connect_timeout=2 "
                        "application_name=pha-promote-node1 sslmode=require")
    with_file = peers.peer_conninfo(Params(passfile="/var/lib/postgresql/.pgpass"), "node1")   # type: ignore[arg-type]
    assert with_file.endswith(" passfile=/var/lib/postgresql/.pgpass")
