"""GMF for Python: a gRPC server runtime with one worker process per core and io_uring I/O."""

from . import _native

_native.select()  # compiled (mypyc) or pure-Python hot path: decided before it is imported

from ._version import __version__  # noqa: E402
from .errors import StartupError  # noqa: E402
from .placement import Placement  # noqa: E402
from .server import GmfServer, ServerHandle  # noqa: E402
from .tls import ServerCredentials, ssl_server_credentials  # noqa: E402
from .worker import WorkerInfo  # noqa: E402

__all__ = [
    "GmfServer", "Placement", "ServerCredentials", "ServerHandle", "StartupError", "WorkerInfo", "__version__",
    "ssl_server_credentials",
]
