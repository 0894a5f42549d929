"""Side-by-side benchmarks: each comparison runs a baseline and the project's path on the same inputs, in one process.

Run them all with `make bench` (or `python -m benchmarks [comparison ...]`); each comparison's
result is written to benchmarks/results/<comparison>/<date>-<cpu class>.csv with the commit and the machine line.
A comparison is a function returning `Row`s, registered in `benchmarks.__main__.COMPARISONS`.
"""
