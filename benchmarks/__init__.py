"""Benchmarks of aioims (issue 7): ``python -m benchmarks [--smoke]``.

Not part of the installed package and not tests: see docs/performance.md.
"""
