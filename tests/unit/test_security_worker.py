"""The agent worker's socket: where it may live, and who may serve it."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pha import worker
from pha.files import UnsafePath

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, setuid)")]
NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "pha"
    worker.check_socket_dir(str(folder))
    assert mode(folder) == 0o700 and folder.stat().st_uid == 0


def test_existing_root_directory_is_used_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    worker.check_socket_dir(str(folder))
    assert mode(folder) == 0o755  # never chmod'ed


@pytest.mark.parametrize("setup", ["other_owner", "world_writable", "group_writable",
                                   "parent_of_other_owner", "parent_world_writable", "symlink"])
def test_directory_another_user_controls_is_refused(tmp_path: Path, setup: str) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    folder = parent / "run"
    folder.mkdir(mode=0o700)
    if setup == "other_owner":
        os.chown(folder, NOBODY, NOBODY)
    elif setup == "world_writable":
        folder.chmod(0o777)
    elif setup == "group_writable":
        folder.chmod(0o770)
    elif setup == "parent_of_other_owner":
        os.chown(parent, NOBODY, NOBODY)
    elif setup == "parent_world_writable":
        parent.chmod(0o777)  # not sticky: anyone may rename run/ away and plant another
    elif setup == "symlink":
        target, folder = folder, parent / "link"
        folder.symlink_to(target)
    before = os.lstat(folder)
    with pytest.raises(UnsafePath):
        worker.check_socket_dir(str(folder))
    after = os.lstat(folder)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)  # left alone


def test_sticky_parent_is_fine(tmp_path: Path) -> None:
    parent = tmp_path / "tmp"
    parent.mkdir()
    parent.chmod(0o1777)
    worker.check_socket_dir(str(parent / "run"))


def test_worker_refuses_to_serve_there(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, NOBODY, NOBODY)
    worker.serve(str(folder / "agentd.sock"), idle_seconds=1)  # returns at once
    assert list(folder.iterdir()) == []
    assert mode(folder) == 0o755 and folder.stat().st_uid == NOBODY


@pytest.fixture()
def open_dir():
    """A directory under /tmp that any user can reach and write."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="pha-open-", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


def test_shim_hands_nothing_to_a_server_of_another_user(open_dir: Path) -> None:
    """A socket served by another user (planted in a directory it could write):
    the shim sends it no request and no descriptor, and runs the action itself."""
    path = open_dir / "agentd.sock"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(path))
            os.chmod(path, 0o777)
            server.listen(1)
            os.write(write, b"x")
            conn, _ = server.accept()
            conn.settimeout(5)
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            os._exit(10 + len(fds) if data or fds else 0)
        finally:
            os._exit(99)
    os.close(write)
    assert os.read(read, 1) == b"x"
    code = ("import os, sys; sys.path[:0] = %r; os.environ['PHA_WORKER_SOCKET'] = %r; "
            "from pha import shim; print(shim.call_worker('vip', ['monitor']))" % (sys.path, str(path)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "None", out.stderr
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the shim sent something to the planted socket"
