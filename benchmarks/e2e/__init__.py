"""End-to-end benchmark of wsfast against peer clients: ``python -m benchmarks.e2e --help``.

See the "End-to-end benchmarks" section of docs/performance.md.
"""
