"""GMF for Python: a gRPC server runtime with one worker process per core and io_uring I/O.

``gmf.server(...)`` and ``gmf.aio.server(...)`` mirror ``grpc.server`` and ``grpc.aio.server``
(docs/migration.md); ``GmfServer`` is the native API. (``gmf.server`` is that function: the
module of GmfServer stays importable as ``from gmf.server import ...``.)
"""

from . import aio
from ._version import __version__
from .errors import StartupError
from .grpc_server import server  # the function: it replaces the module gmf.server as this attribute
from .placement import Placement
from .rpc.inline import run_in_thread, run_inline
from .server import GmfServer, ServerHandle
from .tls import ServerCredentials, ssl_server_credentials
from .worker import WorkerInfo

__all__ = [
    "GmfServer", "Placement", "ServerCredentials", "ServerHandle", "StartupError", "WorkerInfo", "__version__",
    "aio", "run_in_thread", "run_inline", "server", "ssl_server_credentials",
]
