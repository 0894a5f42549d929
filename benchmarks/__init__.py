"""Side-by-side benchmarks: each comparison runs a baseline and the project's path on the same inputs, in one process.

Run them all with `make bench` (or `python -m benchmarks [comparison ...]`); results go to bench_results/.
A comparison is a function returning `Row`s, registered in `benchmarks.__main__.COMPARISONS`.
"""
