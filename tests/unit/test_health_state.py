"""pha.health.state and pha.health.http: endpoint answers, lag parsing, request parsing."""
from __future__ import annotations

import json

import pytest

from pha.health import http
from pha.health.probe import snapshot_from_row
from pha.health.state import (DOWN, BadRequest, NotFound, Snapshot, answer, needs_snapshot,
                              parse_query, text_answer)

pytestmark = pytest.mark.unit

PRIMARY = Snapshot(running=True, role="primary", timeline=2, wal_lsn="0/3000060",
                   replication=({"application_name": "node2", "state": "streaming"},),
                   attributes={"pgsql-status": "PRI"})
SYNC = Snapshot(running=True, role="standby", timeline=2, receive_lsn="0/3000060",
                replay_lsn="0/3000060", lag_bytes=0, receiver="streaming",
                attributes={"pgsql-status": "HS:sync", "pgsql-data-status": "STREAMING|SYNC"})
ASYNC = SYNC._replace(attributes={"pgsql-data-status": "STREAMING|ASYNC"})
POTENTIAL = SYNC._replace(attributes={"pgsql-status": "HS:potential"})
LAGGING = SYNC._replace(lag_bytes=50 * 1024 ** 2, replay_paused=True, attributes={})
DISCONNECTED = SYNC._replace(receiver=None, lag_bytes=None, attributes={"pgsql-status": "HS:alone"})

# endpoint -> expected (primary, sync standby, async standby, lagging standby, disconnected, down)
MATRIX = {
    "/primary": (200, 503, 503, 503, 503, 503),
    "/master": (200, 503, 503, 503, 503, 503),
    "/read-write": (200, 503, 503, 503, 503, 503),
    "/replica": (503, 200, 200, 200, 503, 503),
    "/standby": (503, 200, 200, 200, 503, 503),
    "/replica?lag=10MB": (503, 200, 200, 503, 503, 503),
    "/replica?lag=1GB": (503, 200, 200, 200, 503, 503),
    "/read-only": (200, 200, 200, 200, 200, 503),
    "/read-only?lag=10MB": (200, 200, 200, 503, 503, 503),
    "/sync": (503, 200, 503, 503, 503, 503),
    "/async": (503, 503, 200, 503, 503, 503),
    "/health": (200, 200, 200, 200, 200, 503),
    "/liveness": (200, 200, 200, 200, 200, 200),
    "/": (200, 206, 206, 206, 206, 503),
}


def status(target: str, snapshot: Snapshot) -> int:
    request = http.parse_head(f"GET {target} HTTP/1.1\r\nHost: x".encode())
    return answer(request.path, parse_query(request.path, request.query), snapshot)


@pytest.mark.parametrize("target", sorted(MATRIX))
def test_endpoint_matrix(target: str) -> None:
    states = (PRIMARY, SYNC, ASYNC, LAGGING, DISCONNECTED, DOWN)
    assert tuple(status(target, s) for s in states) == MATRIX[target]


def test_potential_standby_counts_as_async() -> None:
    assert status("/async", POTENTIAL) == 200 and status("/sync", POTENTIAL) == 503


def test_sync_state_needs_streaming_and_attributes() -> None:
    assert SYNC.sync_state == "sync" and ASYNC.sync_state == "async"
    assert SYNC._replace(attributes={}).sync_state is None
    assert DISCONNECTED.sync_state is None
    assert PRIMARY.sync_state is None


@pytest.mark.parametrize("target, error, message", [
    ("/replica?lag=lots", BadRequest, "lag: 'lots' is not a size"),
    ("/replica?lag=1&lag=2", BadRequest, "lag= given 2 times"),
    ("/primary?lag=1MB", BadRequest, "/primary: does not take lag="),
    ("/replica?max_lag=1", BadRequest, "unknown parameter 'max_lag'"),
    ("/nope", NotFound, "no endpoint '/nope'"),
])
def test_bad_queries_name_the_problem(target: str, error: type, message: str) -> None:
    request = http.parse_head(f"GET {target} HTTP/1.1".encode())
    with pytest.raises(error, match=message.replace("?", r"\?")):
        parse_query(request.path, request.query)


def test_trailing_slash_and_liveness_needs_no_database() -> None:
    assert status("/primary/", PRIMARY) == 200
    assert not needs_snapshot("/liveness") and not needs_snapshot("/nope")
    assert needs_snapshot("/") and needs_snapshot("/replica")


def test_text_answers() -> None:
    assert text_answer(PRIMARY) == b"production\n"
    assert text_answer(LAGGING) == b"standby\n"
    assert text_answer(DOWN) is None


def test_body_has_state_and_no_connection_details() -> None:
    body = SYNC.to_json()
    assert body["role"] == "standby" and body["timeline"] == 2 and body["lag_bytes"] == 0
    assert body["sync_state"] == "sync"
    assert body["pha"] == {"pgsql-status": "HS:sync", "pgsql-data-status": "STREAMING|SYNC"}
    assert PRIMARY.to_json()["replication"] == [{"application_name": "node2", "state": "streaming"}]
    assert DOWN.to_json() == {"role": "unknown", "running": False, "checked_at": 0.0}
    text = json.dumps(body)
    assert "password" not in text and "conninfo" not in text


def test_snapshot_from_row() -> None:
    row = (True, None, 3, "0/5000000", "0/4000000", "0/5000100", 16777472, True,
           "2026-01-01 00:00:00+00", "streaming", 150004, None)
    snap = snapshot_from_row(row, {"pgsql-status": "HS:async"}, 12.5)
    assert snap.role == "standby" and snap.timeline == 3 and snap.lag_bytes == 16777472
    assert snap.streaming and snap.sync_state == "async" and snap.taken_at == 12.5
    primary = snapshot_from_row((False, "0/5000000", 3, "0/1", "0/1", None, None, None, None, None,
                                 150004, [{"application_name": "node2"}]), {}, 1.0)
    assert primary.role == "primary" and primary.receive_lsn is None
    assert primary.replication == ({"application_name": "node2"},)


# --- HTTP --------------------------------------------------------------------------------
def test_parse_head() -> None:
    request = http.parse_head(b"OPTIONS /replica?lag=10MB HTTP/1.0\r\nHost: a\r\nUser-Agent: HAProxy")
    assert request == http.Request("OPTIONS", "/replica", {"lag": ["10MB"]})
    assert http.parse_head(b"HEAD /%70rimary HTTP/1.1").path == "/primary"


@pytest.mark.parametrize("head, status", [
    (b"GET /primary", 400),
    (b"GET /primary HTTP/1.1 extra", 400),
    (b"\x00\x01\x02 / HTTP/1.1", 400),
    (b"GET primary HTTP/1.1", 400),
    (b"GET http://x/primary HTTP/1.1", 400),
    (b"GET /primary HTTQ/1.1", 400),
    (b"GET /primary HTTP/2.0", 400),
    (b"GET /primary HTTP/1.1\r\nno colon here", 400),
    (b"GET /primary HTTP/1.1\r\n: empty name", 400),
    (b"POST /primary HTTP/1.1", 405),
    (b"GET /" + b"a" * 2000 + b" HTTP/1.1", 414),
    (b"GET /replica?lag HTTP/1.1", 400),
])
def test_parse_head_rejects(head: bytes, status: int) -> None:
    with pytest.raises(http.HttpError) as caught:
        http.parse_head(head)
    assert caught.value.status == status


def test_responses() -> None:
    get = http.response(200, b'{"a":1}\n')
    assert get.startswith(b"HTTP/1.1 200 OK\r\n") and get.endswith(b"\r\n\r\n{\"a\":1}\n")
    assert b"Content-Length: 8\r\n" in get and b"Connection: close\r\n" in get
    head = http.response(503, b'{"a":1}\n', "HEAD")
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 8" in head
    options = http.response(206, b"{}", "OPTIONS")
    assert b"Allow: GET, HEAD, OPTIONS" in options and options.endswith(b"{}")
    assert b"405 Method Not Allowed" in http.error_response(http.HttpError(405, "no"))
