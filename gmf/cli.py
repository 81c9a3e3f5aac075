"""``gmf serve MODULE:ATTR [options]``: run a GmfServer the way uvicorn/gunicorn run apps.

Every option is one row of ``OPTIONS``: its flag, its ``GMF_*`` environment variable (derived
from the flag), how its text is parsed, its help, and the ``GmfServer`` keyword it sets.
Precedence: command line > environment > what the application configured.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import runtime as rt
from .errors import StartupError
from .placement import Placement
from .server import GmfServer, check_origins, parse_address
from .tls import ServerCredentials

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}")
        return text.lower()

    return parse


def _address(text: str) -> str:
    try:
        parse_address(text)
    except StartupError as exc:
        raise ValueError(str(exc)) from None
    return text


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in text.split(",") if o.strip())
    try:
        return check_origins(origins)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("cors_origins: ")) from None


def parse_bool(text: str) -> bool:
    """Environment text of an on/off option (its flag takes no value: ``--x`` / ``--no-x``)."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")


@dataclass(frozen=True)
class Option:
    name: str  # the flag without "--"; the environment variable is GMF_<NAME>
    parse: Callable[[str], Any]  # text -> value; ValueError says what is expected
    help: str
    keyword: str | None = None  # the GmfServer keyword it sets; None: the CLI uses it itself
    default: str | None = None  # for --help when it is not the GmfServer default
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def env(self) -> str:
        return "GMF_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def default_text(self) -> str:
        if self.default is not None:
            return self.default
        if self.keyword is None:
            return "unset"
        return str(inspect.signature(GmfServer).parameters[self.keyword].default)


OPTIONS: tuple[Option, ...] = (
    Option("bind", _address, "address to listen on; [::]:PORT listens dual-stack", metavar="HOST:PORT",
           default="the application's add_insecure_port() address, else 0.0.0.0:50051"),
    Option("workers", _integer, "worker processes", "workers", default="one per allowed CPU", metavar="N"),
    Option("placement", Placement.parse, "where workers run: max_spread[:N], max_pack[:N], unbound[:N], "
           "fixed:CPU, fenced:CPU,CPU,...", "placement", default="max_spread", metavar="PLACEMENT"),
    Option("runtime", _choice("auto", *rt.RUNTIMES), "event loop: auto, " + ", ".join(rt.RUNTIMES), "runtime",
           metavar="NAME"),
    Option("max-connections", _integer, "open connections per worker", "max_connections", metavar="N"),
    Option("max-concurrent-streams", _integer, "concurrent RPCs per connection", "max_concurrent_streams",
           metavar="N"),
    Option("max-receive-message-length", _integer, "largest request message, bytes", "max_receive_message_length",
           metavar="BYTES"),
    Option("max-send-message-length", _integer, "largest response message, bytes", "max_send_message_length",
           default="unlimited", metavar="BYTES"),
    Option("max-header-list-size", _integer, "largest request header list, bytes (advertised in SETTINGS)",
           "max_header_list_size", metavar="BYTES"),
    Option("idle-timeout", _number, "seconds a connection may stay open with no RPC before GOAWAY",
           "idle_timeout", metavar="SECONDS"),
    Option("keepalive-min-ping-interval", _number, "seconds between client PINGs without data below which "
           "they are strikes (GOAWAY too_many_pings after max_ping_strikes)", "keepalive_min_ping_interval",
           metavar="SECONDS"),
    Option("max-outbound-buffer", _integer, "response bytes held per connection for a peer that does not read",
           "max_outbound_buffer", metavar="BYTES"),
    Option("slow-handler-threshold", _number, "seconds the event loop may be blocked (by a handler) before a "
           "warning with the handler and its stack", "slow_handler_threshold", metavar="SECONDS"),
    Option("handshake-timeout", _number, "seconds a new connection has to send the HTTP/2 preface (HTTP/1.1: "
           "a complete request head)",
           "handshake_timeout", metavar="SECONDS"),
    Option("grace", _number, "seconds in-flight RPCs get to finish on SIGTERM/SIGINT", "grace", metavar="SECONDS"),
    Option("web", parse_bool, "serve gRPC-Web and Connect beside gRPC on the same port (HTTP/1.1 and HTTP/2; "
           "--no-web: gRPC over HTTP/2 only)", "web"),
    Option("cors-origins", _origins, "origins browsers may call from, comma-separated ('*': any)", "cors_origins",
           default="none (no CORS headers)", metavar="ORIGINS"),
    Option("http1-body-timeout", _number, "seconds an HTTP/1.1 request body may take to arrive after its head",
           "http1_body_timeout", metavar="SECONDS"),
    Option("health", parse_bool, "serve grpc.health.v1.Health (NOT_SERVING while draining)", "health"),
    Option("reflection", parse_bool, "serve server reflection v1 and v1alpha (grpcurl list/describe)", "reflection"),
    Option("access-log", parse_bool, "one gmf.access log line per RPC (method, status, duration, peer)",
           "access_log"),
    Option("metrics-port", _integer, "serve Prometheus /metrics (counters of all workers) on this port",
           "metrics_port", default="off", metavar="PORT"),
    Option("metrics-host", str, "address the /metrics endpoint listens on", "metrics_host", metavar="HOST"),
    Option("tls-cert", str, "PEM certificate chain: serve TLS (TLS 1.2+, ALPN h2, and http/1.1 with --web) with "
           "--tls-key", metavar="FILE"),
    Option("tls-key", str, "PEM private key of --tls-cert", metavar="FILE"),
    Option("tls-client-ca", str, "PEM roots client certificates must chain to (mutual TLS)", metavar="FILE"),
    Option("require-client-cert", parse_bool, "refuse clients without a certificate from --tls-client-ca",
           default="on with --tls-client-ca"),
    Option("log-level", _choice(*LOG_LEVELS), "log level: " + ", ".join(LOG_LEVELS), default="info",
           metavar="LEVEL"),
    Option("app-dir", str, "directory to import MODULE from (put first on sys.path)", default="the current directory",
           metavar="DIR"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Every usage error is one line and exit status 2 (argparse's convention)."""
        hint = " (gmf serve --help lists them)" if "unrecognized arguments" in message else ""
        self.exit(2, f"gmf: error: {message}{hint}\n")


def build_parser(options: Sequence[Option] = OPTIONS) -> _Parser:
    parser = _Parser(
        prog="gmf serve",
        allow_abbrev=False,
        description="Serve a GmfServer: MODULE:ATTR names a GmfServer, or a function that returns one "
        "(called with no arguments), e.g. `gmf serve myservice.server:create_server --bind 0.0.0.0:50051`. "
        "Each option can also be set with its GMF_* environment variable; the command line wins over "
        "the environment, which wins over what the application configured. Defaults shown are "
        "GmfServer's, used when the application sets nothing.",
    )
    parser.add_argument("app", metavar="MODULE:ATTR", help="the GmfServer, or a factory returning one")
    for opt in options:
        text = f"{opt.help} [env {opt.env}; default: {opt.default_text()}]"
        if opt.parse is parse_bool:
            parser.add_argument(opt.flag, dest=opt.dest, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(opt.flag, dest=opt.dest, metavar=opt.metavar, help=text)
    return parser


@dataclass(frozen=True)
class Setting:
    option: Option
    value: Any
    text: str
    source: str  # the flag or the environment variable it came from


def read_options(
    parser: _Parser, args: argparse.Namespace, environ: Mapping[str, str], options: Sequence[Option] = OPTIONS
) -> dict[str, Setting]:
    """Option name -> its setting, for every option set on the command line or in the
    environment; a bad value is a usage error naming its flag or variable."""
    found: dict[str, Setting] = {}
    for opt in options:
        given = getattr(args, opt.dest)
        if isinstance(given, bool):
            text, source = ("1", opt.flag) if given else ("0", f"--no-{opt.name}")
        elif given is not None:
            text, source = given, opt.flag
        elif environ.get(opt.env, "") != "":
            text, source = environ[opt.env], opt.env
        else:
            continue
        try:
            value = opt.parse(text)
            if opt.keyword is not None:
                GmfServer().configure(**{opt.keyword: value})  # GmfServer's own checks, one at a time
        except ValueError as exc:
            parser.error(f"{source}={text!r}: {exc}")
        found[opt.name] = Setting(opt, value, text, source)
    return found


class AppError(Exception):
    """MODULE:ATTR does not name a GmfServer (a usage error: exit status 2)."""


def load_server(spec: str) -> GmfServer:
    """Import MODULE, look up ATTR (dotted names allowed), call it if it is a factory."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppError(f"{spec!r} is not MODULE:ATTR, e.g. myservice.server:server or myservice.server:create_server")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the application imports something missing: its traceback says what
        raise AppError(
            f"no module named {exc.name!r} in {sys.path[0]}: run gmf serve from the directory that contains "
            "it, or pass --app-dir DIR"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise AppError(f"module {module_name!r} has no attribute {attr!r}: name the GmfServer or its factory")
        target = getattr(target, part)
    if callable(target) and not isinstance(target, GmfServer):
        target = target()
    if not isinstance(target, GmfServer):
        raise AppError(f"{spec} is a {type(target).__name__}, not a GmfServer or a function that returns one")
    return target


def _tls_credentials(parser: _Parser, found: Mapping[str, Setting]) -> ServerCredentials | None:
    """--tls-cert/--tls-key [--tls-client-ca] [--require-client-cert] -> credentials (files read
    now: a missing or unreadable file is a usage error naming its flag or variable)."""
    given = {name: found[name] for name in ("tls-cert", "tls-key", "tls-client-ca", "require-client-cert")
             if name in found}
    if not given:
        return None
    if "tls-cert" not in given or "tls-key" not in given:
        parser.error("TLS needs both --tls-cert and --tls-key (or GMF_TLS_CERT and GMF_TLS_KEY)")
    for name in ("tls-cert", "tls-key", "tls-client-ca"):
        if name in given and not os.access(given[name].value, os.R_OK):
            parser.error(f"{given[name].source}={given[name].text!r}: no readable file there")
    require = given["require-client-cert"].value if "require-client-cert" in given else None
    if require and "tls-client-ca" not in given:
        parser.error("--require-client-cert needs --tls-client-ca (the roots client certificates must chain to)")
    try:
        return ServerCredentials.from_files(given["tls-cert"].value, given["tls-key"].value,
                                            given["tls-client-ca"].value if "tls-client-ca" in given else None,
                                            require_client_auth=require)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot load TLS credentials: {exc}")


def serve(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    found = read_options(parser, args, os.environ)
    for setting in found.values():
        if setting.source.startswith("--"):  # code that reads GMF_* itself (runtime, logging) sees the flag
            os.environ[setting.option.env] = setting.text
    sys.path.insert(0, os.path.abspath(found["app-dir"].value if "app-dir" in found else os.getcwd()))
    try:
        server = load_server(args.app)
    except AppError as exc:
        parser.error(str(exc))
    keywords = {s.option.keyword: s.value for s in found.values() if s.option.keyword}
    tls = _tls_credentials(parser, found)
    if tls is not None:
        keywords["tls"] = tls
    try:
        server.configure(**keywords)
    except ValueError as exc:
        parser.error(f"{args.app}: {exc}")
    server.serve(found["bind"].value if "bind" in found else None)  # a startup failure exits with status 1
    return 0
