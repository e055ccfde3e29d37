"""pha.files: root's writes never follow a link another user planted."""
import os
import stat

import pytest

from pha import files

pytestmark = pytest.mark.unit


def test_write_atomic_sets_mode_before_content(tmp_path):
    target = tmp_path / "f"
    files.write_atomic(str(target), "secret", mode=0o600)
    assert target.read_text() == "secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    files.write_atomic(str(target), b"again", mode=0o640)
    assert target.read_bytes() == b"again" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_write_atomic_replaces_a_planted_symlink_without_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's")
    link = tmp_path / "pha.conf"
    link.symlink_to(victim)
    files.write_atomic(str(link), "new")
    assert victim.read_text() == "root's"
    assert not link.is_symlink() and link.read_text() == "new"


def test_write_atomic_sets_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    target = tmp_path / "owned"
    files.write_atomic(str(target), "x", uid=65534, gid=65534)
    assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)


def test_write_json_and_read_nofollow(tmp_path):
    target = tmp_path / "state"
    files.write_json(str(target), {"a": 1})
    assert files.read_nofollow(str(target)) == '{"a": 1}'
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        files.read_nofollow(str(link))
    with pytest.raises(files.UnsafePath):
        files.read_nofollow(str(target), limit=3)


def test_touch_nofollow_refuses_links_and_fifos(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "hb"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        files.touch_nofollow(str(link))
    assert victim.read_text() == "keep"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):  # no reader: ENXIO; never blocks
        files.touch_nofollow(str(fifo))
    with pytest.raises(OSError):
        files.touch_nofollow(str(tmp_path))
    files.touch_nofollow(str(tmp_path / "new"))
    assert (tmp_path / "new").is_file()


def test_private_dir(tmp_path):
    d = tmp_path / "d"
    assert files.private_dir(str(d)) == str(d)
    os.chmod(d, 0o777)
    files.private_dir(str(d))
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    link = tmp_path / "l"
    link.symlink_to(d)
    with pytest.raises(files.UnsafePath):
        files.private_dir(str(link))
