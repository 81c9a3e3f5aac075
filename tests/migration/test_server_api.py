"""gmf.server() / gmf.aio.server() without serving: what their arguments become, the port bound
by add_insecure_port before start(), and the grpc.Server calls that need no workers. (Serving
is tests/migration/test_migration.py; nothing here forks: grpcio channels may live in this
process.)"""

from __future__ import annotations

import asyncio
import socket
from concurrent import futures

import grpc
import pytest

import gmf
from gmf import channel_args, settings

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too


def test_grpc_server_arguments_become_gmf_options() -> None:
    server = gmf.server(futures.ThreadPoolExecutor(max_workers=7), options=[
        ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", 1000),
        ("grpc.max_concurrent_streams", 50), ("grpc.http2.min_recv_ping_interval_without_data_ms", 10000),
        ("grpc.http2.max_ping_strikes", 0), ("grpc.max_connection_idle_ms", 60000),
        ("grpc.so_reuseport", 1), ("grpc.keepalive_time_ms", 7200000), ("some.unknown.arg", "x"),
    ], maximum_concurrent_rpcs=64, compression=grpc.Compression.Gzip, workers=1)
    options = server.gmf_server.options
    assert options.handler_threads == 7 and options.max_concurrent_rpcs == 64 and options.compression == "gzip"
    assert options.max_receive_message_length == 2**31 - 1 and options.max_send_message_length == 1000
    assert options.max_concurrent_streams == 50 and options.keepalive_min_ping_interval == 10.0
    assert options.max_ping_strikes == 2**31 - 1 and options.idle_timeout == 60.0
    assert options.grpcio_flavor == "sync" and len(server.gmf_server.cpu_sets) == 1
    aio = gmf.aio.server(migration_thread_pool=futures.ThreadPoolExecutor(max_workers=3))
    assert aio.gmf_server.options.handler_threads == 3 and aio.gmf_server.options.grpcio_flavor == "aio"
    assert gmf.server().gmf_server.options.handler_threads == 10  # GmfServer's default


def test_web_options_as_gmfserver_takes_them_and_from_the_environment() -> None:
    """gmf.server()/gmf.aio.server() take web, cors_origins and http1_body_timeout as GmfServer
    does (checked the same); GMF_WEB, GMF_CORS_ORIGINS and GMF_HTTP1_BODY_TIMEOUT apply through
    gmf.settings, as for every option of serve(), start() and gmf serve."""
    options = gmf.server(web=False, cors_origins=["https://app.example.com"], http1_body_timeout=5).gmf_server.options
    assert (options.web, options.cors_origins, options.http1_body_timeout) == (False, ("https://app.example.com",), 5)
    options = gmf.aio.server(cors_origins=["*"]).gmf_server.options
    assert (options.web, options.cors_origins) == (True, ("*",))
    with pytest.raises(ValueError, match="not an origin"):
        gmf.server(cors_origins=["app.example.com"])
    with pytest.raises(ValueError, match="web must be True or False"):
        gmf.aio.server(web="no")
    server = gmf.server(cors_origins=["https://app.example.com"])
    settings.apply(server.gmf_server, {"GMF_WEB": "off", "GMF_CORS_ORIGINS": "http://a.example, http://b.example:8080",
                                       "GMF_HTTP1_BODY_TIMEOUT": "2.5"})
    options = server.gmf_server.options
    assert (options.web, options.cors_origins, options.http1_body_timeout) == (
        False, ("http://a.example", "http://b.example:8080"), 2.5)
    with pytest.raises(gmf.StartupError, match="GMF_CORS_ORIGINS='a.example': 'a.example' is not an origin"):
        settings.apply(server.gmf_server, {"GMF_CORS_ORIGINS": "a.example"})


def test_bad_grpc_arguments() -> None:
    with pytest.raises(ValueError, match="grpc.max_concurrent_streams"):
        channel_args.gmf_keywords([("grpc.max_concurrent_streams", "many")])
    with pytest.raises(ValueError, match="xds"):
        gmf.server(xds=True)
    with pytest.raises(TypeError, match="gmf.ssl_server_credentials"):
        gmf.server().add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(b"key", b"cert")]))


def test_add_insecure_port_binds_now_and_returns_the_port() -> None:
    server = gmf.server(workers=1)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0 and server.port is None  # bound, not serving yet
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))  # held: another server cannot take it meanwhile
    assert server.add_insecure_port("127.0.0.1:0") == port  # the same address again: the same port
    with pytest.raises(ValueError, match="one address"):
        server.add_insecure_port("127.0.0.1:1")
    server.gmf_server._reservation("")  # let the port go (start() hands it to the workers)


def test_stop_and_wait_before_start() -> None:
    server = gmf.server()
    assert server.wait_for_termination(timeout=0.01) is True  # timed out: still not stopped
    event = server.stop(grace=None)
    assert event.is_set() and server.wait_for_termination(timeout=0.01) is False
    with pytest.raises(RuntimeError, match="started already"):
        server.start()
    aio = gmf.aio.server()

    async def run() -> tuple[bool, bool]:
        timed_out = await aio.wait_for_termination(timeout=0.01)
        await aio.stop(1.0)
        return timed_out, await aio.wait_for_termination(timeout=0.01)

    assert asyncio.run(run()) == (True, False)
