"""Benchmark for empc: see bench/README.md."""
