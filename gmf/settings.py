"""``GMF_*`` settings: every option of ``gmf serve``, its environment variable, how its text is
parsed, and the ``GmfServer`` keyword it sets; and the one place that reads them from the
environment (``apply``), for ``serve()``, ``start()`` and ``gmf serve`` alike.

Every option is one row of ``OPTIONS``: its flag, its ``GMF_*`` environment variable (derived
from the flag), how its text is parsed, its help, and the ``GmfServer`` keyword it sets.
Precedence: ``gmf serve``'s command line > the environment > what the application configured.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import runtime as rt
from .address import parse_address
from .errors import StartupError
from .placement import Placement
from .rpc.inline import SYNC_HANDLERS
from .tls import ServerCredentials
from .web.cors import check_origins

if TYPE_CHECKING:
    from .server import GmfServer

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
        from .server import GmfServer

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
           "a complete request head)", "handshake_timeout", metavar="SECONDS"),
    Option("grace", _number, "seconds in-flight RPCs get to finish on SIGTERM/SIGINT", "grace", metavar="SECONDS"),
    Option("handler-threads", _integer, "threads per worker for plain-def handlers", "handler_threads", metavar="N"),
    Option("sync-handlers", _choice(*SYNC_HANDLERS), "where plain-def unary handlers run: auto (threads, inline once "
           "seen never to block), threads, inline", "sync_handlers", metavar="WHERE"),
    Option("web", parse_bool, "serve gRPC-Web and Connect beside gRPC on the same port (HTTP/1.1 and HTTP/2; "
           "--no-web: gRPC over HTTP/2 only)", "web"),
    Option("cors-origins", _origins, "origins browsers may call from, comma-separated ('*': any)", "cors_origins",
           default="none (no CORS headers)", metavar="ORIGINS"),
    Option("http1-body-timeout", _number, "seconds an HTTP/1.1 request body may take to arrive after its head",
           "http1_body_timeout", metavar="SECONDS"),
    Option("balance-connections", parse_bool, "a worker passes a new connection to one that serves fewer "
           "(--no-balance-connections: each keeps what SO_REUSEPORT gives it)", "balance_connections"),
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


@dataclass(frozen=True)
class Setting:
    option: Option
    value: Any
    text: str
    source: str  # the flag or the environment variable it came from


class SettingError(ValueError):
    """A bad value, named by its flag or variable: ``GMF_WORKERS='x': expected an integer``."""


def read(environ: Mapping[str, str], given: Mapping[str, tuple[str, str]] | None = None,
         options: Sequence[Option] = OPTIONS) -> dict[str, Setting]:
    """Option name -> its setting, for every option ``given`` (name -> (text, source), e.g. from
    the command line) or set in ``environ``; each value is checked as GmfServer checks it.
    Raises SettingError."""
    from .server import GmfServer

    found: dict[str, Setting] = {}
    for opt in options:
        if given and opt.name in given:
            text, source = given[opt.name]
        elif environ.get(opt.env, "") != "":
            text, source = environ[opt.env], opt.env
        else:
            continue
        try:
            value = opt.parse(text)
            if opt.keyword is not None:
                GmfServer().configure(**{opt.keyword: value})  # GmfServer's own checks, one at a time
        except ValueError as exc:
            raise SettingError(f"{source}={text!r}: {exc}") from None
        found[opt.name] = Setting(opt, value, text, source)
    return found


def keywords(found: Mapping[str, Setting]) -> dict[str, Any]:
    """The GmfServer keywords of these settings."""
    return {s.option.keyword: s.value for s in found.values() if s.option.keyword}


def tls_credentials(found: Mapping[str, Setting]) -> ServerCredentials | None:
    """--tls-cert/--tls-key [--tls-client-ca] [--require-client-cert] -> credentials (files read
    now: a missing or unreadable file is an error naming its flag or variable)."""
    given = {name: found[name] for name in ("tls-cert", "tls-key", "tls-client-ca", "require-client-cert")
             if name in found}
    if not given:
        return None
    if "tls-cert" not in given or "tls-key" not in given:
        raise SettingError("TLS needs both --tls-cert and --tls-key (or GMF_TLS_CERT and GMF_TLS_KEY)")
    for name in ("tls-cert", "tls-key", "tls-client-ca"):
        if name in given and not os.access(given[name].value, os.R_OK):
            raise SettingError(f"{given[name].source}={given[name].text!r}: no readable file there")
    require = given["require-client-cert"].value if "require-client-cert" in given else None
    if require and "tls-client-ca" not in given:
        raise SettingError("--require-client-cert needs --tls-client-ca (the roots client certificates must chain to)")
    try:
        return ServerCredentials.from_files(given["tls-cert"].value, given["tls-key"].value,
                                            given["tls-client-ca"].value if "tls-client-ca" in given else None,
                                            require_client_auth=require)
    except (OSError, ValueError) as exc:
        raise SettingError(f"cannot load TLS credentials: {exc}") from None


def bind_address(environ: Mapping[str, str] | None = None) -> str | None:
    """GMF_BIND, when set (checked by ``apply``)."""
    return (os.environ if environ is None else environ).get("GMF_BIND") or None


def apply(server: GmfServer, environ: Mapping[str, str] | None = None) -> None:
    """Configure ``server`` from the ``GMF_*`` settings in ``environ`` (default: os.environ),
    over what the application configured. ``serve()`` and ``start()`` call it (so does
    ``gmf serve``, whose flags it puts in the environment first); GMF_BIND is read where the
    address is chosen (``bind_address``). Raises StartupError naming the variable."""
    environ = os.environ if environ is None else environ
    try:
        found = read(environ)
        tls = tls_credentials(found)
    except SettingError as exc:
        raise StartupError(str(exc)) from None
    chosen = keywords(found)
    if tls is not None:
        chosen["tls"] = tls
    if chosen:
        try:
            server.configure(**chosen)
        except ValueError as exc:
            named = ", ".join(f"{s.source}={s.text!r}" for s in found.values() if s.option.keyword)
            raise StartupError(f"{named}: {exc}") from None
