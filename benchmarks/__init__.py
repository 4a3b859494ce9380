"""Benchmark instrument for ovserve and its peers (see benchmarks/README.md)."""
