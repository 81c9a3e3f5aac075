"""Pieces of ``invoke soak``: the server it loads and the client processes that load it.

The entry point is :func:`gmf.toolkit.soak.run`; see docs/security.md.
"""
