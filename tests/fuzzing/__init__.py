"""Property-based fuzzing of the sans-IO HTTP/2 core (hypothesis).

``h2_strategies`` builds client byte streams (frames of every type, valid HPACK blocks,
mutations, chunking); ``h2_target`` drives ``H2ServerConnection`` with them the way
``GrpcConnection`` does and checks the invariants. ``tests/fuzzing/test_fuzz_h2.py`` runs a bounded
number of examples; ``invoke fuzz`` (``harness``, ``python -m tests.fuzzing``) runs the same target longer.
"""
