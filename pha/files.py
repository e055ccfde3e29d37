"""Files written by root where other users may have a say.

pha runs as root and writes into directories that another user owns
(PGDATA and the postgres home belong to the postgres user). Every such
write goes through here: a fresh temporary file created with O_EXCL and
O_NOFOLLOW (a planted file or symlink makes it fail, never redirects it),
its mode and owner set on the descriptor before any byte is written, then
renamed over the target (rename replaces a symlink, never follows it).
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from typing import Optional

_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafePath(OSError):
    """A path another user controls in a way root must not follow."""


def write_atomic(path: str, data: bytes | str, mode: int = 0o600,
                 uid: Optional[int] = None, gid: Optional[int] = None) -> None:
    """Replace `path` with `data`: mode and owner (when given) are set before the content."""
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.pha-tmp")
    fd = os.open(tmp, _OPEN_NEW, 0o600)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_json(path: str, value: object, mode: int = 0o600) -> None:
    """write_atomic of a JSON document."""
    write_atomic(path, json.dumps(value), mode)


def read_nofollow(path: str, limit: int = 1 << 20) -> str:
    """A file's text, refusing a symlink at the last component and anything over `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafePath(errno.EFBIG, f"over {limit} bytes", path)
    return data.decode("utf-8", "replace")


def touch_nofollow(path: str, mode: int = 0o644) -> None:
    """Create `path` or update its time, refusing a symlink or a non-regular file there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(errno.EINVAL, "not a regular file", path)
        os.utime(fd)
    finally:
        os.close(fd)


def private_dir(path: str, mode: int = 0o700) -> str:
    """Make sure `path` is a directory owned by this user, not a symlink, with no more than `mode`."""
    os.makedirs(path, mode=mode, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UnsafePath(errno.EPERM, "not a directory of this user's", path)
    if st.st_mode & 0o777 & ~mode:
        os.chmod(path, st.st_mode & mode & 0o777)
    return path


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
