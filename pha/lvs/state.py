"""The LVS director's small files: its lag drain state and its heartbeat_file.

The state file lives in the node's runtime directory (PHA_STATE_DIR, default /run/pha),
0600 in a 0700 directory. heartbeat_file is only touched (created or its time updated,
never written to), and only in a directory only root can change.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat

from pha import ocf
from pha.files import UnsafePath, private_dir, read_nofollow, touch_nofollow, write_json
from pha.values import shown

STATE_DIR = "/run/pha"


def state_path(res: ocf.Resource) -> str:
    """The instance's small state file (lag drain state), in the node's runtime dir."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", res.instance)
    return os.path.join(res.env.get("PHA_STATE_DIR", STATE_DIR), f"lvsdr.{safe}.json")


def load_state(res: ocf.Resource) -> dict:
    """The state file's content; a missing or damaged file reads as a fresh state."""
    try:
        state = json.loads(read_nofollow(state_path(res)))
    except (OSError, ValueError):
        return {}
    drained = state.get("drained") if isinstance(state, dict) else None
    if not isinstance(drained, dict) or not all(isinstance(v, int) for v in drained.values()):
        return {}
    return {"drained": {str(name): count for name, count in drained.items()}}


def save_state(res: ocf.Resource, state: dict) -> None:
    """Write the state file atomically, mode 0600 in a 0700 directory."""
    path = state_path(res)
    private_dir(os.path.dirname(path))
    write_json(path, state)


def drop_state(res: ocf.Resource) -> None:
    try:
        os.unlink(state_path(res))
    except FileNotFoundError:
        pass


def stamp_heartbeat(res: ocf.Resource) -> None:
    """Create heartbeat_file or update its time; a refusal is logged, never fatal."""
    path = str(res.params["heartbeat_file"] or res.params["heatbeat_file"] or "")
    if not path:
        return
    try:
        check_root_only(os.path.dirname(os.path.abspath(path)))
        touch_nofollow(path, 0o644)
    except OSError as exc:
        res.log.warning(f"heartbeat_file {shown(path)} not stamped: {exc.strerror or exc}")


def check_root_only(directory: str) -> None:
    """Raise UnsafePath unless only root can change `directory` or the way to it.

    Every directory on its path, as written and as resolved, belongs to root and is not
    writable by group or others (a sticky directory above it may be); symlinks on the way
    belong to root.
    """
    real = os.path.realpath(directory)
    for path in _prefixes(os.path.abspath(directory)) + _prefixes(real):
        st = os.lstat(path)
        shared = st.st_mode & 0o022 and not (st.st_mode & stat.S_ISVTX and path != real)
        if st.st_uid != 0 or (stat.S_ISDIR(st.st_mode) and shared):
            raise UnsafePath(errno.EPERM, f"{path} is not a directory only root can write to", directory)


def _prefixes(path: str) -> list[str]:
    parts = path.strip("/").split("/") if path != "/" else []
    return ["/"] + ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]
