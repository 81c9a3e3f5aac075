"""Workers per core: placement, pinning, SO_REUSEPORT on one port, max_connections, crash
restart, hooks, startup failures, runtime selection."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import pytest

from gmf import GmfServer, Placement
from gmf import runtime as rt
from tests.helpers import ROOT, poll
from tests.helpers.net import free_port, wait_port
from tests.helpers.rawh2 import RawClient, refused
from tests.helpers.servers import spawn

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

CPUS = sorted(os.sched_getaffinity(0))


def cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # any thread may have forked (start() supervises in one)
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def worker_pid_of_new_connection(target: str) -> int:
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        return int(gmftest_pb2_grpc.TestServiceStub(ch).Unary(tpb.EchoRequest(action="pid"), timeout=10).message)


# ---------------------------------------------------------------- placement
def test_placement_cpu_sets():
    assert Placement.fixed(CPUS[0]).cpu_sets() == [(CPUS[0],)]
    assert Placement.unbound(3).cpu_sets() == [None, None, None]
    assert Placement.fenced(CPUS).cpu_sets() == [tuple(CPUS)] * len(CPUS)
    spread = Placement.max_spread().cpu_sets()
    assert sorted(c[0] for c in spread) == CPUS  # one worker per CPU, each pinned
    assert len(Placement.max_pack(len(CPUS) + 1).cpu_sets()) == len(CPUS) + 1  # wraps around


@pytest.mark.parametrize("make", [
    lambda: GmfServer(placement=Placement.fixed(999)),
    lambda: GmfServer(workers=0),
    lambda: Placement.fenced([]),
    lambda: GmfServer(placement=Placement.fenced([CPUS[0], 999])),
    lambda: Placement.max_spread(0),
])
def test_invalid_placement_names_allowed_cpus(make):
    with pytest.raises(ValueError) as err:
        make()
    assert "allowed CPUs: " + ",".join(map(str, CPUS)) in str(err.value)


def test_workers_pinned_per_placement_and_share_one_port(tmp_path):
    srv = spawn("asyncio", workers=len(CPUS))
    try:
        assert len(srv.pids) == len(CPUS)
        assert sorted(cpus_allowed(pid) for pid in srv.pids) == sorted(str(c) for c in CPUS)
        # every worker accepts on the one port that handle.port reports
        seen = {worker_pid_of_new_connection(srv.target) for _ in range(40)}
        assert seen == set(srv.pids)
        log = srv.log()
        for worker_id, pid in enumerate(srv.pids):
            assert f"worker {worker_id} (pid {pid}) on cpu " in log
    finally:
        assert srv.stop() == 0


def test_fixed_placement_pins_one_worker():
    cpu = CPUS[-1]
    srv = spawn("asyncio", placement=f"fixed:{cpu}")
    try:
        assert len(srv.pids) == 1 and cpus_allowed(srv.pids[0]) == str(cpu)
    finally:
        srv.stop()


# ---------------------------------------------------------------- max_connections
def test_max_connections_refuses_extra_keeps_existing():
    srv = spawn("asyncio", workers=1, options={"max_connections": 3})
    try:
        held = []
        for _ in range(3):
            c = RawClient(srv.port)
            c.handshake()
            assert c.frames(until=1, stop=lambda f: f.type == 0x4), "an accepted connection gets SETTINGS"
            held.append(c)
        started = time.monotonic()
        for _ in range(4):  # over the limit: closed at once
            extra = RawClient(srv.port)
            extra.handshake()
            assert extra.closed(wait=3)
            extra.close()
        elapsed = time.monotonic() - started
        from tests.protocol.test_protocol_errors import HELLO_BODY

        for i, c in enumerate(held):  # the existing connections are still served
            c.grpc_request(1, "/helloworld.Greeter/SayHello", HELLO_BODY)
            frames = c.frames(until=3, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
            assert c.decode(frames[-1].data)["grpc-status"] == "0", f"connection {i}"
        log = srv.log()
        logged = log.count("max_connections=3 reached")
        assert 1 <= logged <= 1 + int(elapsed), log  # 4 refusals, logged at most once per second
        for c in held:
            c.close()
        poll.until(lambda: not refused(srv.port), "the worker to take new connections once the held ones closed")
        assert worker_pid_of_new_connection(srv.target) == srv.pids[0]  # capacity is back
    finally:
        srv.stop()


# ---------------------------------------------------------------- connections spread evenly
@pytest.mark.parametrize("runtime", rt.RUNTIMES)
def test_connections_spread_evenly_over_workers(runtime):
    """16 long-lived connections to two workers: SO_REUSEPORT's hash alone splits them 8/8 only
    one time in five (5/11 as often); passing the surplus (gmf.balance) makes it 8/8, and every
    connection passed on serves its RPCs."""
    from tests.helpers.servers import serving

    with serving(runtime, workers=2) as srv:
        channels = [grpc.insecure_channel(srv.target, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(16)]
        try:
            pids = []
            for ch in channels:  # one at a time: each connection is open before the next is made
                stub = gmftest_pb2_grpc.TestServiceStub(ch)
                pids.append(int(stub.Unary(tpb.EchoRequest(action="pid"), timeout=10).message))
            assert sorted(pids.count(pid) for pid in srv.pids) == [8, 8], pids
            for ch, pid in zip(channels, pids, strict=True):  # still served where they went, again and again
                stub = gmftest_pb2_grpc.TestServiceStub(ch)
                assert {stub.Unary(tpb.EchoRequest(action="pid"), timeout=10).message for _ in range(3)} == {str(pid)}
            # closed connections count down: the next ones go where there are fewer
            busy = pids[0]
            for ch, pid in list(zip(channels, pids, strict=True)):
                if pid == busy:
                    ch.close()
                    channels.remove(ch)
            poll.until(lambda: worker_pid_of_new_connection(srv.target) == busy, "a new connection on the emptied worker",
                       timeout=5)
        finally:
            for ch in channels:
                ch.close()


@pytest.mark.parametrize("runtime", rt.RUNTIMES)
def test_connections_made_at_once_spread_evenly(runtime):
    """16 connections opened at the same moment (a client fleet starting): both workers accept
    in the same instant, each counting the connections passed to it but not yet taken."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers.servers import serving

    with serving(runtime, workers=2) as srv:
        channels = [grpc.insecure_channel(srv.target, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(16)]
        start = threading.Barrier(16)

        def pid_of(ch: grpc.Channel) -> int:
            start.wait(timeout=10)
            return int(gmftest_pb2_grpc.TestServiceStub(ch).Unary(tpb.EchoRequest(action="pid"), timeout=10).message)

        try:
            with ThreadPoolExecutor(16) as pool:
                pids = list(pool.map(pid_of, channels))
            assert sorted(pids.count(pid) for pid in srv.pids) == [8, 8], pids
        finally:
            for ch in channels:
                ch.close()


def test_without_balancing_the_kernel_hash_decides():
    """balance_connections=False: no table, no passing; SO_REUSEPORT's hash alone (both workers
    still get connections)."""
    with spawn("asyncio", workers=2, options={"balance_connections": False}) as srv:
        seen = {worker_pid_of_new_connection(srv.target) for _ in range(40)}
        assert seen == set(srv.pids)


# ---------------------------------------------------------------- supervisor
def test_killed_worker_restarts_others_never_fail():
    srv = spawn("asyncio", workers=2)
    try:
        channels: dict[int, grpc.Channel] = {}
        for _ in range(60):
            ch = grpc.insecure_channel(srv.target, options=[("grpc.use_local_subchannel_pool", 1)])
            pid = int(gmftest_pb2_grpc.TestServiceStub(ch).Unary(tpb.EchoRequest(action="pid"), timeout=10).message)
            if pid in channels:
                ch.close()
            else:
                channels[pid] = ch
            if len(channels) == 2:
                break
        assert len(channels) == 2
        victim, survivor = srv.pids
        stub = gmftest_pb2_grpc.TestServiceStub(channels[survivor])
        failures: list[Exception] = []
        done = threading.Event()
        calls = [0]

        def load() -> None:
            while not done.is_set():
                try:
                    assert stub.Unary(tpb.EchoRequest(action="pid"), timeout=10).message == str(survivor)
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001
                    failures.append(exc)

        thread = threading.Thread(target=load)
        thread.start()
        try:
            poll.until(lambda: calls[0] or failures, "the load on the surviving worker to run")
            os.kill(victim, signal.SIGKILL)
            new_pids = poll.until(lambda: [p for p in children_of(srv.proc.pid) if p not in (victim, survivor)],
                                  "the killed worker to be restarted", timeout=1.0)
            served = calls[0]
            poll.until(lambda: calls[0] >= served + 10 or failures, "10 more calls served after the restart")
        finally:
            done.set()
            thread.join()
        new_pid = new_pids[0]
        assert not failures, failures[:3]
        assert calls[0] > 10
        assert "was killed by SIGKILL: restarting" in srv.log()
        poll.until(lambda: worker_pid_of_new_connection(srv.target) == new_pid, "the restarted worker to serve",
                   timeout=5, interval=0)
        for ch in channels.values():
            ch.close()
    finally:
        assert srv.stop() == 0


def test_hooks_run_once_per_worker_and_on_drain(tmp_path):
    record = tmp_path / "hooks.txt"
    srv = spawn("asyncio", workers=2, hooks_file=str(record))
    try:
        worker_pid_of_new_connection(srv.target)
    finally:
        assert srv.stop() == 0
    lines = sorted(record.read_text().splitlines())
    starts = [line.split() for line in lines if line.startswith("start")]
    stops = [line.split() for line in lines if line.startswith("stop")]
    assert sorted(s[1] for s in starts) == ["0", "1"] and sorted(s[1] for s in stops) == ["0", "1"]
    assert sorted(int(s[3]) for s in starts) == sorted(srv.pids)
    assert sorted(s[2] for s in starts) == sorted(str(c) for c in CPUS[:2])


def _no_process_with(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return False
            except OSError:
                continue
    return True


def test_port_in_use_one_clear_error_no_orphans():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        out = subprocess.run([sys.executable, "examples/helloworld/server.py", "--host", "127.0.0.1", "--port", str(port)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"gmf: error: cannot listen on 127.0.0.1:{port}: address already in use "
                      "(another server is running there: stop it or choose another port)"], out.stderr
    assert "Traceback" not in out.stderr
    assert _no_process_with(f"--port\x00{port}")


def test_second_gmf_on_same_port_is_refused():
    first = spawn("asyncio", workers=1)
    try:
        out = subprocess.run([sys.executable, "examples/helloworld/server.py", "--host", "127.0.0.1",
                              "--port", str(first.port)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "address already in use" in out.stderr
    finally:
        first.stop()


def test_bad_address_one_clear_error():
    out = subprocess.run([sys.executable, "examples/helloworld/server.py", "--host", "203.0.113.77", "--port", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "gmf: error: cannot listen on 203.0.113.77:0" in out.stderr and "Traceback" not in out.stderr


def test_failing_start_hook_is_a_startup_error():
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        "from tests.helpers.apps import build_server\n"
        "def boom(info): raise RuntimeError('no database')\n"
        "build_server(workers=2, on_worker_start=boom).serve('127.0.0.1:0')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "gmf: error: on_worker_start hook failed in worker" in out.stderr and "no database" in out.stderr


# ---------------------------------------------------------------- runtime selection
def test_runtime_auto_fallback(monkeypatch):
    monkeypatch.delenv(rt.ENV_VAR, raising=False)
    monkeypatch.setattr(rt, "uring_unavailable", lambda: "io_uring_setup failed: Operation not permitted (seccomp)")
    choice = rt.resolve("auto")
    assert choice.name == "uvloop" and "seccomp" in choice.reason
    monkeypatch.setattr(rt, "_uvloop_available", lambda: False)
    choice = rt.resolve("auto")
    assert choice.name == "asyncio" and "uvloop not installed" in choice.reason
    with pytest.raises(RuntimeError, match="runtime 'uring' requested but io_uring_setup failed"):
        rt.resolve("uring")
    with pytest.raises(ValueError, match="unknown runtime"):
        rt.resolve("epoll")


def test_runtime_env_override():
    env = {**os.environ, "GMF_RUNTIME": "asyncio"}
    out = subprocess.run([sys.executable, "-m", "gmf", "runtime"], capture_output=True, text=True, env=env, check=True)
    runtime, hot_path = out.stdout.strip().splitlines()
    assert runtime == "asyncio: set by GMF_RUNTIME" and hot_path.startswith("hot path: ")
    srv = spawn("uvloop", workers=1, env={"GMF_RUNTIME": "asyncio"})
    try:
        assert "runtime=asyncio (set by GMF_RUNTIME)" in srv.log()
    finally:
        srv.stop()


def test_ipv6_dual_stack_and_add_insecure_port():
    server = GmfServer()
    assert server.add_insecure_port("[::]:50051") == 50051  # remembered for serve()/start()
    srv = spawn("asyncio", workers=1, address="[::]:0")
    try:
        for target in (f"127.0.0.1:{srv.port}", f"[::1]:{srv.port}"):
            assert worker_pid_of_new_connection(target) == srv.pids[0]
    finally:
        srv.stop()


def _nofile_soft(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit")


@pytest.mark.parametrize("max_connections, warns", [(2000, False), (10240, True)])
def test_open_file_limit_raised_for_max_connections(max_connections, warns):
    import resource

    def low_limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4000))

    port = free_port()
    proc = subprocess.Popen([sys.executable, "examples/helloworld/server.py", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--max-connections", str(max_connections)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=low_limits)
    try:
        wait_port(port)
        (worker,) = children_of(proc.pid)
        assert _nofile_soft(worker) == 4000  # soft limit lifted to the hard limit
    finally:
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=30)[0]
    assert ("may open only 4000 files" in log) is warns, log
