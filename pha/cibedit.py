"""One CIB transaction: edit a copy of the live CIB with `pcs -f`, push the difference once.

Used by `pha.cluster.apply` and `pha setup` (pha.deploy). The copy lives in a
private directory made by `mktemp -d` on the machine the runner executes on
(a cluster node, or a lab node); the push is `pcs cluster cib-push EDITED
diff-against=ORIGINAL`, so only what the edits changed reaches the cluster,
and changes others made meanwhile are kept. The directory is removed on the
way out, whatever happened.

    with CibEdit(crm.Crm(run)) as edit:
        edit.pcs(["pcs", "resource", "create", ...])
        if edit.diff():
            edit.push()
"""
from __future__ import annotations

import shlex
from typing import Optional, Sequence

from pha import crm

DEFAULT_PREFIX = "/tmp/pha-cib."


class CibEdit:
    """A copy of the live CIB being edited; a context manager."""

    def __init__(self, bridge: crm.Crm, prefix: str = DEFAULT_PREFIX) -> None:
        self.bridge = bridge
        self.prefix = prefix
        self.workdir = ""
        self.original = self.edited = ""

    def __enter__(self) -> "CibEdit":
        workdir = self.bridge.call(["mktemp", "-d", f"{self.prefix}XXXXXXXX"]).stdout.strip()
        if not workdir.startswith(self.prefix) or "\n" in workdir:
            raise crm.CrmError(["mktemp", "-d"], f"returned {workdir!r}, not a {self.prefix}* directory")
        self.workdir = workdir
        self.original, self.edited = f"{workdir}/original.xml", f"{workdir}/cib.xml"
        try:
            self.bridge.call(["pcs", "cluster", "cib", self.original])
            self.bridge.call(["cp", self.original, self.edited])
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        self.bridge.call(["rm", "-rf", "--", self.workdir], ok=(0, 1))

    def live(self) -> str:
        """The live CIB as it was copied (XML text)."""
        return self.bridge.call(["cat", self.original]).stdout

    def pcs(self, argv: Sequence[str], ok: Sequence[int] = (0,)) -> crm.CommandResult:
        """Run a `pcs ...` command line against the copy (as `pcs -f COPY ...`)."""
        if not argv or argv[0] != "pcs":
            raise ValueError(f"{shlex.join(argv)!r} is not a pcs command")
        return self.bridge.call(["pcs", "-f", self.edited, *argv[1:]], ok=ok)

    def run(self, argv: Sequence[str], ok: Sequence[int] = (0,)) -> crm.CommandResult:
        """Run another command with CIB_file pointing at the copy (cibadmin, crm_attribute ...)."""
        return self.bridge.call(["env", f"CIB_file={self.edited}", *argv], ok=ok)

    def diff(self) -> str:
        """crm_diff's patch (format 2) from the live CIB to the copy; "" when they are the same."""
        result = self.bridge.call(["crm_diff", "--original", self.original, "--new", self.edited,
                                   "--no-version"], ok=(0, 1))
        return result.stdout if result.returncode == 1 else ""

    def push(self, timeout: Optional[float] = None) -> None:
        """Push the copy's difference to the cluster in one transaction."""
        self.bridge.call(["pcs", "cluster", "cib-push", self.edited, f"diff-against={self.original}"],
                         timeout=timeout)
