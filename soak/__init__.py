"""The soak run behind ``invoke soak`` (see docs/security.md); not installed.

``harness`` is the entry point (``python -m soak``); ``server`` is the GMF server it loads and
``client`` one of the client processes that load it. Servers start the way ``invoke bench``
starts them (:mod:`bench.servers`).
"""
