"""The shipped benchmark: ``python -m benchmarks.bench`` (see README, "Performance")."""
