"""``gmf serve MODULE:ATTR [options]``: run a GmfServer the way uvicorn/gunicorn run apps.

Its options are the rows of ``gmf.settings.OPTIONS``, each also read from its ``GMF_*``
variable. Precedence: command line > environment > what the application configured: the flags
given are put in the environment, and ``serve()`` applies the environment (``settings.apply``),
as it does for a server started any other way.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import settings
from .server import GmfServer
from .settings import OPTIONS, Option, Setting, parse_bool

__all__ = ["OPTIONS", "Option", "Setting", "build_parser", "load_server", "parse_bool", "read_options", "serve"]


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


def read_options(
    parser: _Parser, args: argparse.Namespace, environ: Mapping[str, str], options: Sequence[Option] = OPTIONS
) -> dict[str, Setting]:
    """Option name -> its setting, for every option set on the command line or in the
    environment; a bad value is a usage error naming its flag or variable."""
    given: dict[str, tuple[str, str]] = {}
    for opt in options:
        flag = getattr(args, opt.dest)
        if isinstance(flag, bool):
            given[opt.name] = ("1", opt.flag) if flag else ("0", f"--no-{opt.name}")
        elif flag is not None:
            given[opt.name] = (flag, opt.flag)
    try:
        return settings.read(environ, given, options)
    except settings.SettingError as exc:
        parser.error(str(exc))


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
    target = getattr(target, "gmf_server", target)  # gmf.server() / gmf.aio.server() wrap a GmfServer
    if callable(target) and not isinstance(target, GmfServer):
        try:
            inspect.signature(target).bind()
        except TypeError as exc:
            raise AppError(f"{spec} needs arguments ({exc}): name a GmfServer, or a function callable with none "
                           "that returns one") from None
        except ValueError:  # no signature to inspect (a builtin): just call it
            pass
        made = target()
        target = getattr(made, "gmf_server", made)
    if not isinstance(target, GmfServer):
        raise AppError(f"{spec} is a {type(target).__name__}, not a GmfServer or a function that returns one")
    return target


def serve(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    found = read_options(parser, args, os.environ)
    try:
        settings.tls_credentials(found)  # a missing file is a usage error now, not a startup failure
    except settings.SettingError as exc:
        parser.error(str(exc))
    for setting in found.values():
        if setting.source.startswith("--"):  # serve() applies the environment: the flags win there
            os.environ[setting.option.env] = setting.text
    sys.path.insert(0, os.path.abspath(found["app-dir"].value if "app-dir" in found else os.getcwd()))
    try:
        server = load_server(args.app)
        server.configure(**settings.keywords(found))
    except AppError as exc:
        parser.error(str(exc))
    except ValueError as exc:
        parser.error(f"{args.app}: {exc}")
    server.serve()  # applies GMF_* (so the flags), GMF_BIND included; a startup failure exits with status 1
    return 0
