"""GMF for Python: a gRPC server runtime with one worker process per core and io_uring I/O."""

from ._version import __version__
from .errors import StartupError
from .placement import Placement
from .server import GmfServer, ServerHandle
from .tls import ServerCredentials, ssl_server_credentials
from .worker import WorkerInfo

__all__ = [
    "GmfServer", "Placement", "ServerCredentials", "ServerHandle", "StartupError", "WorkerInfo", "__version__",
    "ssl_server_credentials",
]
