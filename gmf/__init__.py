"""GMF for Python: a gRPC server runtime with one worker process per core and io_uring I/O.

``gmf.server(...)`` and ``gmf.aio.server(...)`` mirror ``grpc.server`` and ``grpc.aio.server``
(docs/migration.md); ``GmfServer`` is the native API. (``gmf.server`` is that function: the
module of GmfServer stays importable as ``from gmf.server import ...``.)
"""

from . import _native

_native.select()  # compiled (mypyc) or pure-Python hot path: decided before it is imported

from . import aio  # noqa: E402
from ._version import __version__  # noqa: E402
from .errors import StartupError  # noqa: E402
from .grpc_server import server  # noqa: E402  # the function: it replaces the module gmf.server as this attribute
from .placement import Placement  # noqa: E402
from .rpc.inline import run_in_thread, run_inline  # noqa: E402
from .server import GmfServer, ServerHandle  # noqa: E402
from .tls import ServerCredentials, ssl_server_credentials  # noqa: E402
from .worker import WorkerInfo  # noqa: E402

__all__ = [
    "GmfServer", "Placement", "ServerCredentials", "ServerHandle", "StartupError", "WorkerInfo", "__version__",
    "aio", "run_in_thread", "run_inline", "server", "ssl_server_credentials",
]
