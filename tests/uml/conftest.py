"""Tests that need real IPVS run inside one user-mode-linux guest per pytest session.

On the host (no IPVS), every test collected under tests/uml/ is swapped for a proxy item.
The first proxy to run boots ONE guest with tools/uml-run, which runs pytest on all the
selected uml tests inside it, streams the guest's output to the terminal, and writes each
test's outcome to a JSON file on a directory shared with the host. Each proxy then reports
its test's outcome from that file: pass, fail (with the guest's traceback) or skip.

Inside the guest (PHA_UML_GUEST=1, set by tools/uml-init) the tests run normally, and a
small reporter writes the outcomes to $PHA_UML_REPORT.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

IN_GUEST = os.environ.get("PHA_UML_GUEST") == "1"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UML_RUN = REPO / "tools" / "uml-run"
GUEST_TIMEOUT = int(os.environ.get("PHA_UML_TIMEOUT", "900"))
GUEST_MEMORY = os.environ.get("PHA_UML_MEM", "2G")


# --------------------------------------------------------------------------- guest side

class OutcomeRecorder:
    """Collects each test's outcome in the guest and writes them as JSON at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.results.setdefault(report.nodeid, {"outcome": "passed", "text": "", "duration": 0.0})
        entry["duration"] += report.duration
        if report.failed:
            entry["outcome"] = "failed"
            entry["text"] += f"[{report.when}] {report.longreprtext}\n"
        elif report.skipped and entry["outcome"] != "failed":
            entry["outcome"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longreprtext
            entry["text"] = str(reason)

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.results, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    report = os.environ.get("PHA_UML_REPORT")
    if IN_GUEST and report:
        config.pluginmanager.register(OutcomeRecorder(Path(report)), "pha-uml-outcomes")


# --------------------------------------------------------------------------- host side

class GuestRun:
    """One UML guest running pytest on the given node ids; outcomes read back as JSON."""

    def __init__(self, config: pytest.Config, nodeids: list[str]) -> None:
        self.config = config
        self.nodeids = nodeids
        self.transcript: list[str] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.returncode: int | None = None
        self.wall = 0.0
        self.unavailable = ""

    def _echo(self, line: str) -> None:
        self.transcript.append(line)
        capture = self.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            sys.stdout.write(f"[uml] {line}")
            sys.stdout.flush()

    def run(self) -> None:
        if not Path(os.environ.get("UML_KERNEL", "/usr/bin/linux.uml")).exists():
            self.unavailable = "user-mode-linux is not installed (apt-get install user-mode-linux)"
            return
        share = Path(tempfile.mkdtemp(prefix="pha-uml-"))
        report = share / "outcomes.json"
        # The guest mounts fresh tmpfs on these: a checkout or venv below one must be passed in.
        hidden = ("/tmp/", "/var/tmp/", "/run/", "/dev/shm/")
        rw = [str(share), *(p for p in {str(REPO), sys.prefix} if p.startswith(hidden))]
        argv = [sys.executable, str(UML_RUN), *(f"--rw={d}" for d in rw), "--mem", GUEST_MEMORY,
                "--timeout", str(GUEST_TIMEOUT), "--env", f"PHA_UML_REPORT={report}", "--",
                sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rfEs",
                "--rootdir", str(REPO), "-c", str(REPO / "setup.cfg"), *self.nodeids]
        started = time.monotonic()
        try:
            with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace") as guest:
                assert guest.stdout is not None
                for line in guest.stdout:
                    self._echo(line)
                self.returncode = guest.wait()
            if report.exists():
                self.results = json.loads(report.read_text())
        finally:
            self.wall = time.monotonic() - started
            shutil.rmtree(share, ignore_errors=True)
        self._echo(f"guest pytest exited {self.returncode} after {self.wall:.1f}s\n")

    def tail(self, lines: int = 40) -> str:
        return "".join(self.transcript[-lines:])


class GuestTest(pytest.Item):
    """Stands on the host for a test that runs in the guest."""

    def __init__(self, *, original: pytest.Item, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original = original
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)

    def _guest_run(self) -> GuestRun:
        run = self.config.stash.get(GUEST_RUN, None)
        if run is None:
            selected = [item.nodeid for item in self.session.items if isinstance(item, GuestTest)]
            run = GuestRun(self.config, selected)
            self.config.stash[GUEST_RUN] = run
            run.run()
        return run

    def runtest(self) -> None:
        run = self._guest_run()
        if run.unavailable:
            pytest.skip(run.unavailable)
        result = run.results.get(self.nodeid)
        if result is None:
            pytest.fail(f"{self.nodeid} did not run in the UML guest (uml-run exited {run.returncode});"
                        f" guest output tail:\n{run.tail()}", pytrace=False)
        if result["outcome"] == "skipped":
            pytest.skip(f"in the UML guest: {result['text']}")
        if result["outcome"] == "failed":
            pytest.fail(f"in the UML guest:\n{result['text']}", pytrace=False)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.original.reportinfo()


GUEST_RUN = pytest.StashKey[GuestRun]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if IN_GUEST:
        return
    for index, item in enumerate(items):
        if HERE in Path(str(item.path)).resolve().parents and not isinstance(item, GuestTest):
            items[index] = GuestTest.from_parent(item.parent, name=item.name, original=item)


# --------------------------------------------------------------------------- guest fixtures

@pytest.fixture
def ipvs_client() -> Iterator[Any]:
    """An IPVS client on a kernel with no virtual services; everything is removed afterwards."""
    from pha import ipvs
    client = ipvs.IPVSClient()
    for state in client.services():
        client.remove(state.service)
    yield client
    for state in client.services():
        client.remove(state.service)
    client.close()
