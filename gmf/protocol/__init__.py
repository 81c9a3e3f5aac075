"""Sans-IO protocol core: HTTP/2 framing and gRPC semantics.

Nothing in this package touches a socket or an event loop: bytes go in, events and bytes
come out, so every runtime (io_uring, uvloop, asyncio) drives the same code.
"""
