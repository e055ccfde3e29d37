"""The agent worker and the ocf/ shims, with real processes."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pha import install, worker

pytestmark = pytest.mark.unit
MONITOR_ENV = {"OCF_RESKEY_ip": "127.0.0.1", "OCF_RESKEY_nic": "lo",
               "OCF_RESOURCE_INSTANCE": "vip-lo", "OCF_RESKEY_CRM_meta_interval": "10000"}


@pytest.fixture()
def shim(tmp_path: Path):
    """The installed vip shim, with its own worker socket; the worker is stopped after."""
    vip = next(p for p in install.install(tmp_path / "ocf") if p.name == "vip")
    sock = tmp_path / "run" / "agentd.sock"
    env = {**os.environ, **MONITOR_ENV, "PHA_WORKER_SOCKET": str(sock)}
    yield vip, env, sock
    pid = _lock_holder(sock)
    if pid:
        os.kill(pid, signal.SIGTERM)


def _lock_holder(sock: Path) -> int:
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if sock.with_name(sock.name + ".lock").exists():
            inode = os.stat(str(sock) + ".lock").st_ino
            if fields[5].endswith(f":{inode}"):
                return int(fields[4])
    return 0


def run_timed(argv: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run argv; return its result and the CPU seconds it (and its children) used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def wait_for(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_shim_is_executable_and_finds_pha(shim) -> None:
    path, env, _ = shim
    assert path.name == "vip" and os.access(path, os.X_OK)
    first = path.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    out = subprocess.run([str(path), "meta-data"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and '<resource-agent name="vip"' in out.stdout


def test_worker_serves_actions_cheaply(shim) -> None:
    path, env, sock = shim
    cold, cold_cpu = run_timed([str(path), "monitor"], env)
    assert cold.returncode == 0, cold.stderr
    wait_for(sock)
    warm, warm_cpu = run_timed([str(path), "monitor"], env)
    assert warm.returncode == 0, warm.stderr
    # In-process the shim imports pyroute2; through the worker it imports nothing heavy.
    assert warm_cpu < cold_cpu / 3, (cold_cpu, warm_cpu)


def test_worker_passes_codes_and_exit_reasons(shim) -> None:
    path, env, sock = shim
    subprocess.run([str(path), "monitor"], env=env, timeout=30)
    wait_for(sock)
    bad = subprocess.run([str(path), "validate-all"], env={**env, "OCF_RESKEY_ip": "1.2.3.999"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 6
    assert "ocf-exit-reason:parameter ip=1.2.3.999 is not an IPv4 or IPv6 address" in bad.stderr
    gone = subprocess.run([str(path), "monitor"], env={**env, "OCF_RESKEY_ip": "127.9.9.9"},
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 7


def test_stale_worker_steps_aside(shim) -> None:
    path, env, sock = shim
    subprocess.run([str(path), "monitor"], env=env, timeout=30)
    wait_for(sock)
    first = _lock_holder(sock)
    source = Path(worker.__file__).with_name("shim.py")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, time.time_ns() + 10_000_000_000))
    try:
        out = subprocess.run([str(path), "monitor"], env=env, timeout=30)
        assert out.returncode == 0
        deadline = time.monotonic() + 10
        while _lock_holder(sock) in (0, first):
            assert time.monotonic() < deadline, "no fresh worker after the code changed"
            time.sleep(0.05)
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture()
def fake_worker(tmp_path: Path, monkeypatch):
    """A worker (forked from pytest) whose action is `action(marker)`; yields a caller factory."""
    path, marker = tmp_path / "w.sock", tmp_path / "action.pid"
    servers = []

    def start(action) -> callable:
        def run_action(request: dict, fds: list[int]) -> None:
            marker.write_text(str(os.getpid()))
            action()
        monkeypatch.setattr(worker, "_run_action", run_action)
        monkeypatch.setattr(worker, "_preload", lambda: None)
        pid = os.fork()
        if pid == 0:
            try:
                worker.serve(str(path), idle_seconds=60)
            finally:
                os._exit(0)
        servers.append(pid)
        wait_for(path)
        code = ("import os, sys; sys.path[:0] = %r; os.environ['PHA_WORKER_SOCKET'] = %r; "
                "from pha import shim; print(shim.call_worker('vip', ['monitor']))" % (sys.path, str(path)))
        return lambda: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    yield start, marker
    for pid in servers:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def test_action_is_killed_when_its_caller_leaves(fake_worker) -> None:
    start, marker = fake_worker
    caller = start(lambda: (time.sleep(60), os._exit(0)))()
    wait_for(marker)
    action = int(marker.read_text())
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{action}").exists():
        assert time.monotonic() < deadline, "the action outlived its caller"
        time.sleep(0.05)


def test_action_exit_code_is_reported(fake_worker) -> None:
    start, _ = fake_worker
    caller = start(lambda: os._exit(7))()
    out, _ = caller.communicate(timeout=30)
    assert out.strip() == "7"
