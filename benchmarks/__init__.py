"""Benchmarks run against the real local broker (`make bench`)."""
