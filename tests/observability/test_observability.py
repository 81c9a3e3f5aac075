"""Observability: counters summed over 2 workers (Prometheus /metrics, `python -m gmf stats`),
kept across a worker's SIGKILL, worker-tagged log lines, the access log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, poll
from tests.helpers.net import free_port
from tests.helpers.servers import ServerProcess, server_fixture, spawn

GREETER = "/helloworld.Greeter/SayHello"
SYNC = "/gmftest.SyncService/Unary"
TEST_UNARY = "/gmftest.TestService/Unary"
CONNECTIONS = 24  # fresh connections: SO_REUSEPORT puts some on each worker


def fresh_channel(target: str) -> grpc.Channel:
    """A channel with its own connection (grpcio shares connections between channels by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics over HTTP: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def per_worker(samples: dict, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name:
            worker = dict(ls)["worker"]
            out[worker] = out.get(worker, 0) + v
    return out


def make_traffic(target: str, connections: int, greets: int) -> None:
    """On each fresh connection: ``greets`` SayHello, one sync unary, one unknown method,
    one TestService abort(NOT_FOUND)."""
    for i in range(connections):
        with fresh_channel(target) as channel:
            greeter = helloworld_pb2_grpc.GreeterStub(channel)
            for _ in range(greets):
                assert greeter.SayHello(helloworld_pb2.HelloRequest(name=f"n{i}"), timeout=10).message
            sync = channel.unary_unary(SYNC, tpb.EchoRequest.SerializeToString, tpb.EchoReply.FromString)
            assert sync(tpb.EchoRequest(message="s"), timeout=10).message is not None
            missing = channel.unary_unary("/nope.Missing/Call", lambda b: b, lambda b: b)
            with pytest.raises(grpc.RpcError) as err:
                missing(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as err:
                gmftest_pb2_grpc.TestServiceStub(channel).Unary(
                    tpb.EchoRequest(action="abort", code=grpc.StatusCode.NOT_FOUND.value[0], details="no"), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND


observed_server = server_fixture("Two workers with the metrics endpoint and the access log on.", ["asyncio", "uring"],
                                 workers=2, options=lambda request: {"metrics_port": free_port(), "access_log": True})


def metrics_port(proc: ServerProcess) -> int:
    return int(re.search(r'"metrics_port": (\d+)', " ".join(proc.proc.args))[1])  # type: ignore[arg-type,index]


def test_counters_add_up_over_two_workers_and_survive_a_killed_worker(observed_server: ServerProcess) -> None:
    port = metrics_port(observed_server)
    greets = 3
    make_traffic(observed_server.target, CONNECTIONS, greets)
    samples = scrape(port)

    assert total(samples, "gmf_rpcs_finished_total", method=GREETER, code="OK") == CONNECTIONS * greets
    assert total(samples, "gmf_rpcs_finished_total", method=SYNC, code="OK") == CONNECTIONS
    assert total(samples, "gmf_rpcs_finished_total", method="unknown", code="UNIMPLEMENTED") == CONNECTIONS
    assert total(samples, "gmf_rpcs_finished_total", method=TEST_UNARY, code="NOT_FOUND") == CONNECTIONS
    calls = CONNECTIONS * (greets + 3)
    assert total(samples, "gmf_rpcs_finished_total") == calls
    assert total(samples, "gmf_rpcs_started_total") == calls
    assert total(samples, "gmf_rpcs_started_total", method=GREETER) == CONNECTIONS * greets
    assert total(samples, "gmf_connections_accepted_total") == CONNECTIONS
    assert total(samples, "gmf_connections_refused_total") == 0
    assert total(samples, "gmf_received_bytes_total") > calls * 20
    assert total(samples, "gmf_sent_bytes_total") > calls * 20
    assert total(samples, "gmf_workers_alive") == 2
    accepted = per_worker(samples, "gmf_connections_accepted_total")
    finished = per_worker(samples, "gmf_rpcs_finished_total")
    assert sorted(accepted) == ["0", "1"] and all(n > 0 for n in accepted.values()), accepted
    assert all(n > 0 for n in finished.values()), finished

    # The CLI reads the same endpoint.
    cli = subprocess.run([sys.executable, "-m", "gmf", "stats", "--url", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert re.search(rf"^{re.escape(GREETER)}\s+OK\s+{CONNECTIONS * greets}$", cli.stdout, re.M), cli.stdout
    assert re.search(rf"^unknown\s+UNIMPLEMENTED\s+{CONNECTIONS}$", cli.stdout, re.M), cli.stdout
    assert re.search(rf"^connections  {CONNECTIONS} accepted, \d+ open, 0 refused$", cli.stdout, re.M), cli.stdout
    assert f"{calls} started, {calls} finished" in cli.stdout, cli.stdout
    assert re.search(r"^0\s+\d+", cli.stdout, re.M) and re.search(r"^1\s+\d+", cli.stdout, re.M), cli.stdout

    # A SIGKILLed worker's counts stay (the scrape above just fetched them fresh).
    victim = observed_server.pids[0]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> dict | None:
        s = scrape(port)
        return s if total(s, "gmf_worker_restarts_total") == 1 and total(s, "gmf_workers_alive") == 2 else None

    after = poll.until(restarted, "the killed worker to be restarted (gmf_worker_restarts_total 1, 2 alive)",
                       timeout=20, interval=0.1)
    for name in ("gmf_rpcs_finished_total", "gmf_rpcs_started_total", "gmf_connections_accepted_total"):
        assert total(after, name) == total(samples, name), name
    assert total(after, "gmf_connections_open") == 0
    more = 8
    make_traffic(observed_server.target, more, 1)
    final = scrape(port)
    assert total(final, "gmf_rpcs_finished_total", method=GREETER, code="OK") == CONNECTIONS * greets + more
    assert total(final, "gmf_connections_accepted_total") == CONNECTIONS + more
    assert total(final, "gmf_rpcs_started_total") == total(final, "gmf_rpcs_finished_total") == calls + more * 4

    # Access log: one line per finished RPC, tagged with the worker.
    log = observed_server.log()
    ok_line = re.compile(r"^\S+ \S+ gmf\[\d+\] w[01] INFO /helloworld\.Greeter/SayHello OK \d+\.\d{3}ms "
                         r"ipv4:127\.0\.0\.1:\d+$", re.M)
    assert len(ok_line.findall(log)) == CONNECTIONS * greets + more, log[-2000:]
    assert re.search(r" w[01] INFO /nope\.Missing/Call UNIMPLEMENTED 0\.000ms ipv4:", log)
    assert re.search(r" w[01] INFO /gmftest\.TestService/Unary NOT_FOUND \d+\.\d{3}ms ipv4:", log)
    # Every worker's own lines carry its id, the supervisor's carry "sup".
    assert re.search(r"gmf\[\d+\] w0 INFO worker 0 \(pid \d+\)", log)
    assert re.search(r"gmf\[\d+\] w1 INFO worker 1 \(pid \d+\)", log)
    assert re.search(rf"gmf\[\d+\] sup WARNING worker 0 \(pid {victim}\) was killed by SIGKILL", log)


def test_access_log_is_off_by_default_and_log_level_still_applies() -> None:
    proc = spawn("asyncio", workers=1, env={"GMF_LOG_LEVEL": "WARNING"})
    try:
        with fresh_channel(proc.target) as channel:
            helloworld_pb2_grpc.GreeterStub(channel).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
    finally:
        proc.stop()
    log = proc.log()
    assert "SayHello" not in log and " INFO " not in log, log


def test_metrics_port_in_use_is_a_one_line_startup_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = ("from gmf import GmfServer; "
                f"GmfServer(workers=1, runtime='asyncio', metrics_port={port}).serve('127.0.0.1:0')")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"gmf: error: cannot serve metrics on 127.0.0.1:{port}: "
                                   "address already in use (choose another metrics_port)"), proc.stderr


def test_stats_without_a_server_names_the_fix() -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "gmf", "stats", "--url", f"http://127.0.0.1:{port}/metrics"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "metrics_port" in proc.stderr and "--metrics-port" in proc.stderr, proc.stderr


HANDLE_STATS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.helpers.apps import build_server
handle = build_server(workers=2, runtime="asyncio").start("127.0.0.1:0")  # fork before any channel
from tests.observability.test_observability import make_traffic
make_traffic(f"127.0.0.1:{handle.port}", 10, 2)
live = handle.stats()
handle.stop(grace=5)
print(json.dumps({"live": live, "stopped": handle.stats()}))
"""


def test_handle_stats_is_fresh_and_keeps_the_counts_after_stop() -> None:
    proc = subprocess.run([sys.executable, "-c", HANDLE_STATS, str(ROOT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for when in ("live", "stopped"):
        stats = result[when]
        assert stats["rpcs_finished"][GREETER] == {"OK": 20}, stats
        assert stats["rpcs_finished"]["unknown"] == {"UNIMPLEMENTED": 10}, stats
        assert stats["rpcs_started"][GREETER] == 20
        assert stats["connections_accepted"] == 10
        assert stats["bytes_received"] > 0 and stats["bytes_sent"] > 0
        workers = stats["workers"]
        assert sorted(workers) == ["0", "1"]
        assert sum(w["connections_accepted"] for w in workers.values()) == 10
    assert all(w["alive"] for w in result["live"]["workers"].values())
    assert not any(w["alive"] for w in result["stopped"]["workers"].values())
    assert result["stopped"]["connections_open"] == 0
