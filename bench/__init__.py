"""Pieces of ``invoke bench``: h2load driver, server launcher, memory probe, reports, microbenchmarks.

The entry point is :func:`gmf.toolkit.bench.run`; see docs/benchmarking.md.
"""
