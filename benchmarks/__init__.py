"""The benchmark moved into the package (``dispatcher/bench/``, run as ``dispatcher bench``);
``python -m benchmarks.bench`` is kept as a shim for source checkouts."""
