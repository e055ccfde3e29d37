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

from pha import install, preload, worker
from pha import shim as pha_shim

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
    # in-process: a worker spawned here could start after the fixture looked for it, and outlive the test
    out = subprocess.run([str(path), "meta-data"], env={**env, "PHA_WORKER": "0"}, capture_output=True, text=True)
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
    """A worker (forked from pytest) whose action is `action(request)`, after writing
    its pid to `marker` (and ARGV0.pid); yields (start, marker). start(action) returns
    a caller factory: call(argv) starts a process printing shim.call_worker's result."""
    path, marker = tmp_path / "w.sock", tmp_path / "action.pid"
    servers = []

    def start(action) -> callable:
        def run_action(request: worker.Request, fds: list[int]) -> int:
            for name in (marker, tmp_path / f"{request.argv[0]}.pid"):
                name.write_text(str(os.getpid()))
            return action(request)
        monkeypatch.setattr(worker, "_run_action", run_action)
        monkeypatch.setattr(worker, "preload", lambda: None)
        # pha's files may change under a test run (a shared checkout): never step aside here
        monkeypatch.setattr(worker, "loaded_sources", dict)
        monkeypatch.setattr(worker, "REQUEST_SECONDS", 1)
        pid = os.fork()
        if pid == 0:
            try:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # not pytest's capture
                worker.serve(str(path), idle_seconds=60)
            finally:
                os._exit(0)
        servers.append(pid)
        wait_for(path)

        def call(argv: list[str] = ["monitor"]) -> subprocess.Popen:
            code = ("import os, sys; sys.path[:0] = %r; os.environ['PHA_WORKER_SOCKET'] = %r; "
                    "from pha import shim; print(shim.call_worker('vip', %r))" % (sys.path, str(path), argv))
            return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return call

    yield start, marker
    for pid in servers:
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def read_pid(path: Path, seconds: float = 10) -> int:
    """The pid an action wrote to `path`, once it is there in full."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().endswith(tuple("0123456789"))):
        assert time.monotonic() < deadline, f"{path} never got a pid"
        time.sleep(0.02)
    return int(path.read_text())


def wait_gone(pid: int, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        assert time.monotonic() < deadline, f"process {pid} is still there"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "gone"


def test_action_is_killed_when_its_caller_leaves(fake_worker) -> None:
    start, marker = fake_worker
    caller = start(lambda _: (time.sleep(60), os._exit(0)))()
    action = read_pid(marker)
    caller.kill()
    caller.wait()
    wait_gone(action)


def test_action_exit_code_is_reported(fake_worker) -> None:
    start, _ = fake_worker
    caller = start(lambda _: 7)()
    out, _ = caller.communicate(timeout=30)
    assert out.strip() == "7"


def test_action_that_cannot_start_is_an_internal_error(fake_worker) -> None:
    def broken(_) -> int:
        raise ImportError("no module named pha.agents.vip")
    out, err = fake_worker[0](broken)().communicate(timeout=30)
    assert out.strip() == "1"
    assert "ocf-exit-reason:internal error: ImportError: no module named pha.agents.vip" in err
    assert "ERROR: Traceback (most recent call last):" in err


def slow_action(request: worker.Request) -> int:
    """`slow` sleeps a second and returns 3; anything else returns 0 at once."""
    if request.argv[0] == "slow":
        time.sleep(1)
        return 3
    return 0


def raw_client(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    return client


def test_slow_client_blocks_nobody(fake_worker, tmp_path: Path) -> None:
    start, _ = fake_worker
    call = start(slow_action)
    running = call(["slow"])
    wait_for(tmp_path / "slow.pid")
    # A client that sends one byte every 0.2 s: the request deadline is 1 s in all.
    slow = raw_client(tmp_path / "w.sock")
    began = time.monotonic()
    quick = call(["quick"])
    assert quick.communicate(timeout=30)[0].strip() == "0"
    assert time.monotonic() - began < 0.9, "a slow client held up another caller"
    slow.settimeout(0.2)
    reply = b""
    while not reply and time.monotonic() - began < 5:
        try:
            slow.send(b"{")
            reply = slow.recv(64)
        except socket.timeout:
            continue
        except OSError:
            break
    assert reply in (b"unread\n", b""), reply
    assert time.monotonic() - began < 2.5, "the request deadline is per request, not per receive"
    assert running.communicate(timeout=30)[0].strip() == "3"
    assert time.monotonic() - began < 2.5


def framed(payload: bytes) -> bytes:
    return b"%d\n" % len(payload) + payload


GOOD = b"\0".join([pha_shim.REQUEST_MAGIC, b"vip", b"/", b"18", b"1", b"monitor", b"A=1"])
BAD_REQUESTS = {
    "old literal format": b"{'agent': 'vip', 'argv': ['monitor']}\n",
    "deep nesting": b"-" * 100_000 + b"1\n",
    "header not a number": b"12x\n" + GOOD,
    "oversized": b"%d\n" % (worker.MAX_REQUEST + 1) + GOOD,
    "short": b"%d\n" % (len(GOOD) + 5) + GOOD,
    "wrong magic": framed(GOOD.replace(b"pha-request-1", b"pha-request-0")),
    "agent path": framed(GOOD.replace(b"\0vip\0", b"\0../../x\0")),
    "argc too big": framed(GOOD.replace(b"\x0018\x001\0", b"\x0018\x009\0")),
    "env without =": framed(GOOD + b"\0NOEQUALS"),
    "non-ASCII agent": framed(GOOD.replace(b"\0vip\0", b"\0v\xffp\0")),
}


def test_bad_requests_cost_only_themselves(fake_worker, tmp_path: Path) -> None:
    """Requests the worker cannot read: each caller hears "unread" (its shim runs
    the action in-process), the action in flight finishes with its own code, and
    the worker serves the next caller."""
    start, _ = fake_worker
    call = start(slow_action)
    running = call(["slow"])
    wait_for(tmp_path / "slow.pid")
    clients = {}
    for name, payload in BAD_REQUESTS.items():
        clients[name] = raw_client(tmp_path / "w.sock")
        fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
        try:
            socket.send_fds(clients[name], [payload], fds)
        finally:
            for fd in fds:
                os.close(fd)
    for name, client in clients.items():
        client.settimeout(10)
        assert client.recv(64) == b"unread\n", name
    assert running.communicate(timeout=30)[0].strip() == "3"
    assert call(["quick"]).communicate(timeout=30)[0].strip() == "0"


@pytest.mark.parametrize("error", [MemoryError, RecursionError])
def test_child_error_before_the_action_is_unread(fake_worker, tmp_path: Path, monkeypatch, error) -> None:
    def decode(payload: bytes) -> None:
        raise error()
    monkeypatch.setattr(worker, "decode_request", decode)
    start, _ = fake_worker
    assert start(slow_action)().communicate(timeout=30)[0].strip() == "None"


def test_good_request_is_decoded() -> None:
    request = worker.decode_request(GOOD)
    assert request == worker.Request("vip", ["monitor"], b"/", 18, {b"A": b"1"})
    size, _, payload = pha_shim.encode_request("lvsdr-realsvr", ["start", "a\nb=c"]).partition(b"\n")
    assert int(size) == len(payload)
    sent = worker.decode_request(payload)
    assert sent.agent == "lvsdr-realsvr" and sent.argv == ["start", "a\nb=c"]
    assert sent.env == dict(os.environb) and sent.cwd == os.getcwdb()


def test_worker_error_costs_only_that_event(fake_worker, tmp_path: Path, monkeypatch) -> None:
    """An exception inside the worker's loop (MemoryError here) costs that caller
    only, and it hears that nothing ran (its shim runs the action in-process)."""
    start, _ = fake_worker
    real_peer_uid = worker._peer_uid
    calls = []

    def peer_uid(conn: socket.socket) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError()
        return real_peer_uid(conn)
    monkeypatch.setattr(worker, "_peer_uid", peer_uid)
    call = start(slow_action)
    running = call(["slow"])
    wait_for(tmp_path / "slow.pid")
    dropped = call(["quick"])
    assert dropped.communicate(timeout=30)[0].strip() == "None"
    assert running.communicate(timeout=30)[0].strip() == "3"
    assert call(["quick"]).communicate(timeout=30)[0].strip() == "0"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_actions_die_with_the_worker(fake_worker, tmp_path: Path, sig: int) -> None:
    """No orphan: the action ends with the worker, and its shim reports a failure."""
    start, marker = fake_worker
    caller = start(lambda _: (time.sleep(60), 0)[1])()
    action = read_pid(marker)
    server = _lock_holder(tmp_path / "w.sock")
    os.kill(server, sig)
    out, err = caller.communicate(timeout=30)
    assert out.strip() == "1" and "worker ended during the action" in err
    wait_gone(action)


def test_children_inherit_no_descriptors(fake_worker, tmp_path: Path) -> None:
    """The action holds its caller's stdin/stdout/stderr and nothing else of the worker's."""
    start, _ = fake_worker
    seen = tmp_path / "fds"

    def list_fds(request: worker.Request) -> int:
        seen.write_text(" ".join(os.listdir("/proc/self/fd")))
        return 0
    call = start(list_fds)
    other = raw_client(tmp_path / "w.sock")  # another caller's connection, open meanwhile
    assert call(["monitor"]).communicate(timeout=30)[0].strip() == "0"
    other.close()
    assert sorted(int(fd) for fd in seen.read_text().split()) == [0, 1, 2, 3]  # 3: listdir's own


def copy_of_pha(tmp_path: Path) -> Path:
    """A private copy of the pha package, so its files can be edited."""
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(Path(worker.__file__).parent, root / "pha",
                    ignore=shutil.ignore_patterns("__pycache__", "lab", "commands", "health"))
    return root


def test_worker_notices_a_change_in_a_subpackage(tmp_path: Path) -> None:
    """A module of pha.pgsql changes on disk: the worker steps aside and exits."""
    import sysconfig
    root = copy_of_pha(tmp_path)
    sock = tmp_path / "run" / "agentd.sock"
    paths = [str(root), sysconfig.get_paths()["purelib"]]
    server = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                               "import sys; sys.path[:0] = %r; from pha.worker import serve; serve(%r)"
                               % (paths, str(sock))])
    try:
        wait_for(sock, 30)
        probe = ("import sys; sys.path[:0] = %r; from pha import shim; "
                 "print(shim.call_worker('vip', ['meta-data']))" % (paths,))
        env = {**os.environ, "PHA_WORKER_SOCKET": str(sock)}
        first = subprocess.run([sys.executable, "-I", "-S", "-c", probe], env=env,
                               capture_output=True, text=True, timeout=30)
        assert first.stdout.strip().endswith("0"), first.stderr
        # pha.pgsql.names: loaded by the pgsql agent's module, which the worker preloads
        target = root / "pha" / "pgsql" / "names.py"
        with open(target, "a") as f:
            f.write("\n# changed\n")
        second = subprocess.run([sys.executable, "-I", "-S", "-c", probe], env=env,
                                capture_output=True, text=True, timeout=30)
        assert second.stdout.strip() == "None", second.stderr
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_preload_covers_the_agents_lazy_imports() -> None:
    """Every module an agent imports in a function (crm, net, pgsql.*...) is loaded
    by preload: a forked action imports none of them again."""
    code = ("import sys, pha.worker; from pha.preload import preload; preload(); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('pha.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(out.stdout.split())
    assert {"pha.crm", "pha.crmstatus", "pha.net", "pha.ipvs", "pha.pgsql.instance", "pha.shim",
            "pha.ocf", "pha.ocflog", "pha.ocfmetadata"} <= loaded, out.stderr
    assert not {m for m in loaded if m.startswith(("pha.lab", "pha.commands", "pha.cli"))}


def test_loaded_sources_change_with_any_module(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text("x = 1\n")
    sources = {str(module): preload._file_id(str(module))}
    assert not preload.sources_changed(sources)
    module.write_text("x = 22\n")
    assert preload.sources_changed(sources)
    assert any(path.endswith("pha/worker.py") for path in preload.loaded_sources())
