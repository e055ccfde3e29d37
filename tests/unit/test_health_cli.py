"""`pha health` option checking: bad input is refused with a message naming the option."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pha.health.cli import health
from pha.health.server import is_allowed
from pha.health.cli import parse_networks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("argv, message", [
    (["--dsn", "host=/run/postgresql password=hunter2"], "--dsn: must not hold a password"),
    (["--dsn", "host='unterminated"], "--dsn: \"host='unterminated\" is not a valid conninfo"),
    (["--allow", "10.0.0.0/33"], "--allow: '10.0.0.0/33' is not a network"),
    (["--details-allow", "lan"], "--details-allow: 'lan' is not a network"),
    (["--port", "0"], "'--port'"),
    (["--text-port", "8008"], "--text-port: 8008 is already the HTTP port"),
    (["--interval", "0"], "'--interval': 0.0 must be greater than 0"),
    (["--max-request-bytes", "10"], "'--max-request-bytes'"),
])
def test_bad_options(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(health, argv)
    assert result.exit_code == 2
    assert message in result.output
    assert "hunter2" not in result.output


def test_allowlist_matching() -> None:
    allow = parse_networks(("10.0.0.0/24", "2001:db8::/32", "192.0.2.7"))
    assert is_allowed(("10.0.0.9", 4000), allow)
    assert is_allowed(("::ffff:10.0.0.9", 4000, 0, 0), allow)      # IPv4-mapped on a dual-stack socket
    assert is_allowed(("2001:db8::1", 4000, 0, 0), allow)
    assert is_allowed(("192.0.2.7", 1), allow) and not is_allowed(("192.0.2.8", 1), allow)
    assert not is_allowed(("10.0.1.1", 4000), allow)
    assert not is_allowed(None, allow)
    assert is_allowed(("203.0.113.1", 1), ())                       # no allowlist: everyone
