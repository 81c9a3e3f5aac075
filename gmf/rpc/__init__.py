"""RPC layer: method dispatch, the grpc.aio-style ServicerContext, and the connection protocol."""
