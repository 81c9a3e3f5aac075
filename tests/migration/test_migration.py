"""Moving a grpcio service to GMF changes two lines and nothing a client sees.

The inventory services (``inventory_sync.py`` for grpc.server, ``inventory_aio.py`` for
grpc.aio) are written the way grpcio documents; each runs once on grpcio and once on GMF
(``INVENTORY_IMPL``), in its own process, at GMF's defaults (one worker per CPU). The same
grpcio client (``client.py``, another process) runs each check against both and the outcomes
must be equal, field by field: replies, status codes and details, rich error details
(grpcio-status), metadata both ways, a blocking Watch beside Puts on the same channel, client
cancel, deadlines, blocking handlers side by side, calls in flight at SIGTERM, and
OpenTelemetry's spans (one per RPC, same attributes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, poll

HERE = Path(__file__).parent
IMPLS = ("grpc", "gmf")
SERVICES = ("sync", "aio")
CHECKS = ("unary", "abort_with_status", "streams", "watch", "deadlines", "concurrent")


def env(impl: str) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "tests" / "protos")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GMF_")}  # GMF's defaults
    return {**clean, "INVENTORY_IMPL": impl, "PYTHONPATH": os.pathsep.join(paths)}


@dataclass
class Inventory:
    proc: subprocess.Popen[str]
    port: int


@contextmanager
def inventory(service: str, impl: str, *args: str) -> Iterator[Inventory]:
    """The inventory service on ``impl``, until the block ends (then SIGTERM)."""
    proc = subprocess.Popen([sys.executable, str(HERE / f"inventory_{service}.py"), *args], env=env(impl), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"{impl} inventory did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield Inventory(proc, int(line.split()[1]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def client(port: int, check: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.migration.client", str(port), check, *args], cwd=ROOT,
                            env=env("grpc"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_client(port: int, check: str) -> dict:
    proc = client(port, check)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("service", SERVICES)
def test_same_outcomes_on_grpcio_and_gmf(service: str, check: str) -> None:
    seen = {}
    for impl in IMPLS:
        with inventory(service, impl) as server:
            seen[impl] = run_client(server.port, check)
    assert seen["gmf"] == seen["grpc"]


@pytest.mark.parametrize(("grace", "slow", "expected"), [
    (1.0, 5.0, "UNAVAILABLE"),  # the grace period ends first: the call is cancelled
    (3.0, 1.0, "OK"),  # the call ends first
])
@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_with_calls_in_flight(service: str, grace: float, slow: float, expected: str) -> None:
    """The service's own SIGTERM handler calls stop(grace): a Slow call and a blocking Watch are
    in flight. The Watch ends (is_active() turns False, the handler returns), the Slow call
    finishes or is cancelled at the end of the grace period, and the process exits on time."""
    seen = {}
    for impl in IMPLS:
        with inventory(service, impl, "--grace", str(grace)) as server:
            caller = client(server.port, "in_flight", str(slow))
            assert caller.stdout is not None
            assert caller.stdout.readline().strip() == "READY"
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            out, _ = server.proc.communicate(timeout=grace + 20)
            took = time.monotonic() - started
            result, err = caller.communicate(timeout=30)
            assert caller.returncode == 0, err
            seen[impl] = {**json.loads(result.strip().splitlines()[-1]), "exit": server.proc.returncode,
                          "terminated": "TERMINATED" in out}
            assert took < grace + 2.5, f"{impl} took {took:.1f}s to stop"  # the Watch holds it to the end of grace
    assert seen["gmf"] == seen["grpc"]
    assert seen["gmf"]["slow"]["code"] == expected and seen["gmf"]["exit"] == 0


@pytest.mark.parametrize("service", SERVICES)
def test_opentelemetry_spans_are_the_same(service: str, tmp_path: Path) -> None:
    """OpenTelemetry's grpc server interceptor (sync, or aio), exporting from inside the server
    process (each GMF worker): one span per RPC, with the same names, kinds, statuses and rpc.*
    attributes on both."""
    spans = {}
    for impl in IMPLS:
        path = tmp_path / f"{impl}.jsonl"
        with inventory(service, impl, "--otel", str(path)) as server:
            run_client(server.port, "unary")
            run_client(server.port, "streams")
        lines = poll.until(lambda p=path: p.exists() and p.read_text().splitlines(), f"{impl}'s spans")
        spans[impl] = sorted(
            (s["name"], s["kind"], s["status"],
             tuple(sorted((k, v) for k, v in s["attributes"].items() if k != "net.peer.port")))
            for s in map(json.loads, lines))
    assert len(spans["grpc"]) == 7  # Put x3, Get, Audit; PutMany, Sync
    assert spans["gmf"] == spans["grpc"]


@pytest.mark.parametrize("service", SERVICES)
def test_maximum_concurrent_rpcs_and_grpc_options(service: str) -> None:
    """maximum_concurrent_rpcs=2: a third call at once is refused as grpcio refuses it (GMF: per
    worker; one channel reaches one worker). grpc options with a GMF meaning apply (the aio
    service sets grpc.max_receive_message_length=1024), the others are accepted."""
    seen = {}
    for impl in IMPLS:
        with inventory(service, impl, "--max-rpcs", "2") as server:
            seen[impl] = run_client(server.port, "limits")
    assert seen["gmf"] == seen["grpc"]
    assert seen["gmf"]["three_at_once"][:2] == ["OK", "OK"]
    assert seen["gmf"]["large"]["code"] == ("RESOURCE_EXHAUSTED" if service == "aio" else "OK")
