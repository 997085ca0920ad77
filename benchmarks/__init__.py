"""The benchmarks of upvest-verify; ``python -m benchmarks`` runs them all (see README.md).

Each ``bench_*.py`` is also a script of its own. Nothing here is part of the test
suite; ``tests/test_benchmark_harness.py`` runs the harness at tiny sizes.
"""
