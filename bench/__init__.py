"""Benchmark scripts (not part of the shipped block): run each as a module from the repo root, e.g.

    .venv/bin/python -m bench.pb_speed --help

Results and how they were measured: bench/RESULTS.md. Nothing outside bench/ imports this package.
"""
