"""Benchmarks for verta_jupyter: `python -m bench` runs them all and rewrites bench/RESULTS.md.

Each benchmark module `bench/bench_NAME.py` exposes `run(quick: bool) -> list[dict]` and is
runnable alone as `python -m bench.bench_NAME`. A row is a dict with these keys:

| key | meaning |
|---|---|
| name | what was measured, e.g. "capture, 100 helpers" |
| value | our median (a number) |
| unit | "ms", "s", "KB", "MB/s", ... (the unit of value and of a numeric baseline) |
| baseline | the anchor measured in the same run: a number in `unit`, or None |
| ratio | value / baseline (None when there is no baseline) |
| target | the goal, e.g. "< 50 ms", "<= 1.5 s", "ratio <= 1.2", ">= 0.7x", or "" |
| note | what the baseline is, and anything a reader needs |

Optional keys the runner understands: `spread` (text, e.g. "IQR 1.1-1.4 ms, n=7"),
`baseline_name` (what the anchor is), `passed` (bool: overrides the runner's own reading of
`target`), `profile` (text: cProfile top entries, shown when the target is missed).
`bench.common.row(...)` builds a row with those keys; `bench.common.measure(fn)` times.
Benchmarks are not timed tests: they report, they do not fail the build.
"""
