"""pha.haproxy: config.ini reading, validation messages, the rendered haproxy.cfg."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pha import haproxy

pytestmark = pytest.mark.unit

BASE = """\
# pha4pgsql-style config
cluster_type=muti
node1=node1
node2=node2
node3=node3
pgsql_pgport=5432
pgsql_repuser=replication
pgsql_reppassord="s3cret-pw"
"""


def config(text: str, tmp_path: Path) -> haproxy.HAProxyConfig:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return haproxy.read_config(str(path))


def test_defaults(tmp_path: Path) -> None:
    cfg = config(BASE, tmp_path)
    assert [s.name for s in cfg.servers] == ["node1", "node2", "node3"]
    assert (cfg.rw_port, cfg.ro_port, cfg.stats_port, cfg.health_port) == (5000, 5001, 7000, 8008)
    assert (cfg.inter_ms, cfg.fall, cfg.rise, cfg.balance) == (2000, 3, 2, "roundrobin")
    text = haproxy.render(cfg)
    assert "bind *:5000" in text and "bind *:5001" in text and "bind *:7000" in text
    assert "option httpchk OPTIONS /primary" in text
    assert "option httpchk OPTIONS /replica\n" in text
    assert "balance roundrobin" in text
    assert "default-server inter 2000ms fall 3 rise 2 on-marked-down shutdown-sessions" in text
    assert "server node2 node2:5432 check port 8008" in text
    assert "s3cret" not in text


def test_tuning_addresses_and_readers(tmp_path: Path) -> None:
    cfg = config(BASE + """
othernodes="reader1 reader2"
health_port=8010
haproxy_addresses="node1=10.0.0.1 reader2=2001:db8::7"
haproxy_bind=10.0.0.100
haproxy_rw_port=6000
haproxy_ro_port=6001
haproxy_stats_port=0
haproxy_balance=leastconn
haproxy_max_lag=16MB
haproxy_inter=500ms
haproxy_fall=2
haproxy_rise=1
haproxy_check_timeout=400ms
haproxy_maxconn=500
""", tmp_path)
    text = haproxy.render(cfg)
    read_write, read_only = text.split("listen pgsql-read-write")[1].split("listen pgsql-read-only")
    assert "server node1 10.0.0.1:5432 check port 8010" in read_write
    assert "reader" not in read_write
    assert "server reader2 2001:db8::7:5432 check port 8010" in read_only
    assert "option httpchk OPTIONS /replica?lag=16777216" in read_only
    assert "balance leastconn" in read_only
    assert "listen stats" not in text and "bind 10.0.0.100:6000" in text
    assert "inter 500ms fall 2 rise 1" in text and "timeout check 400ms" in text
    assert "maxconn 500" in text


def test_sections_and_comments_are_ignored(tmp_path: Path) -> None:
    cfg = config("[cluster]\n; comment\nnode1=a  # trailing comment\n[haproxy]\nhaproxy_fall=5\n", tmp_path)
    assert cfg.servers == (haproxy.Server("a", "a"),) and cfg.fall == 5


@pytest.mark.parametrize("extra, message", [
    ("haproxy_rw_port=0", r"config.ini:9: haproxy_rw_port: '0' is not an integer between 1 and 65535"),
    ("haproxy_ro_port=5000", r"config.ini:9: haproxy_ro_port: '5000' is already haproxy_rw_port"),
    ("haproxy_balance=random", r"config.ini:9: haproxy_balance: 'random' is not one of roundrobin, leastconn"),
    ("haproxy_max_lag=lots", r"config.ini:9: haproxy_max_lag: 'lots' is not a byte count"),
    ("haproxy_inter=2h", r"config.ini:9: haproxy_inter: '2h' is not a duration"),
    ("haproxy_fall=0", r"config.ini:9: haproxy_fall: '0' is not an integer between 1 and 100"),
    ("haproxy_inetr=2s", r"config.ini:9: haproxy_inetr: unknown key"),
    ("haproxy_addresses=node9=10.0.0.9", r"config.ini:9: haproxy_addresses: 'node9' is not a configured node"),
    ("haproxy_addresses=node1", r"config.ini:9: haproxy_addresses: 'node1' is not NAME=ADDRESS"),
    ("node4=node1", r"config.ini:9: node4: 'node1' names node 'node1' twice"),
    ("node4=bad/name", r"config.ini:9: node4: 'bad/name' is not a node name"),
    ("haproxy_bind=not an address", r"config.ini:9: haproxy_bind: 'not an address' is not"),
    ("pgsql_pgport=x", r"config.ini:9: pgsql_pgport: 'x' is not an integer"),
    ("this is not a key", r"config.ini:9: expected KEY=value, found 'this is not a key'"),
    ('node5="unterminated', r"config.ini:9: node5: cannot parse"),
])
def test_errors_name_file_line_key_and_value(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(haproxy.ConfigError, match=message):
        config(BASE + extra + "\n", tmp_path)


def test_no_nodes(tmp_path: Path) -> None:
    with pytest.raises(haproxy.ConfigError, match="no node1..nodeN key"):
        config("othernodes=r1\n", tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(haproxy.ConfigError, match="nope.ini: cannot read"):
        haproxy.read_config(str(tmp_path / "nope.ini"))


def test_command_prints_or_writes(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text(BASE)
    runner = CliRunner()
    printed = runner.invoke(haproxy.gencfg_haproxy, [str(ini)])
    assert printed.exit_code == 0 and "listen pgsql-read-write" in printed.output
    out = tmp_path / "haproxy.cfg"
    written = runner.invoke(haproxy.gencfg_haproxy, [str(ini), "--output", str(out)])
    assert written.exit_code == 0 and out.read_text() == printed.output
    assert out.stat().st_mode & 0o777 == 0o644
    ini.write_text(BASE + "haproxy_fall=zero\n")
    failed = runner.invoke(haproxy.gencfg_haproxy, [str(ini)])
    assert failed.exit_code == 1 and "haproxy_fall: 'zero'" in failed.output


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy")
def test_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text(BASE + 'othernodes="r1"\nhaproxy_addresses="node1=127.0.0.1 node2=127.0.0.2 '
                   'node3=127.0.0.3 r1=::1"\nhaproxy_max_lag=1MB\n')
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy.render(haproxy.read_config(str(ini))))
    checked = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr
