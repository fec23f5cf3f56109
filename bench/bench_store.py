"""The embedded store: large-artifact throughput and memory, and listing a big store.

    python -m bench.bench_store          # quick: 256 MiB artifact, 10,000 runs
    python -m bench.bench_store --full   # 1 GiB artifact, 10,000 runs

Rows:
- `log_artifact` of one large file (hash + copy + fsync + rename + one transaction) in MiB/s,
  against `shutil.copyfile` of the same file measured in the same child process, alternating
  (target >= 0.7x); also against copyfile + fsync, which is what a durable copy costs;
- the child's peak memory (VmHWM) while logging it (target < 100 MB), and tracemalloc's peak of
  Python allocations during the call;
- listing every run of a store holding 10,000 runs with 20 metrics each (`client.find_runs()`
  and an experiment's `find_runs()`; target < 50 ms), plus what it cost to log those runs.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import measure, run_measured, row

MiB = 1 << 20
RUNS = 10_000
METRICS = 20

_CHILD = '''
import json, os, shutil, sys, time, tracemalloc
from pathlib import Path
from verta_jupyter import Client

src, work, reps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
size = src.stat().st_size
out = {"copy": [], "copy_fsync": [], "log": [], "traced_peak": 0}

def copy(fsync):
    dst = work / "copy.bin"
    t = time.perf_counter()
    shutil.copyfile(src, dst)
    if fsync:
        fd = os.open(dst, os.O_RDONLY); os.fsync(fd); os.close(fd)
    return time.perf_counter() - t, lambda: dst.unlink()

def log(traced=False):
    store = work / "store"
    run = Client(store=store).set_experiment_run("big")
    if traced:
        tracemalloc.start()
    t = time.perf_counter()
    run.log_artifact("big", str(src))
    seconds = time.perf_counter() - t
    if traced:
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    run._store.close()
    return seconds, lambda: shutil.rmtree(store)

for i in range(reps):
    for name, fn in (("copy", lambda: copy(False)), ("log", log), ("copy_fsync", lambda: copy(True))):
        seconds, cleanup = fn()
        out[name].append(seconds)
        cleanup()
        os.sync()  # untimed: the next measurement must not pay for this one's writeback
log(traced=True)[1]()
print(json.dumps(out))
'''


def _big_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 251:] + block[: i % 251])  # distinct chunks, cheap to make
    with open(path, "rb") as f:  # warm the page cache: both contenders read from memory
        while f.read(16 * MiB):
            pass


def artifact_rows(size: int, reps: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="vj-bench-store-") as tmp:
        src = Path(tmp) / "big.bin"
        _big_file(src, size)
        (Path(tmp) / "work").mkdir()
        env_code = ("import os; os.environ['VERTA_JUPYTER_PROGRESS_MIN_BYTES'] = str(1 << 62)\n"
                    f"import sys; sys.argv = ['x', {str(src)!r}, {str(Path(tmp) / 'work')!r}, '{reps}']\n")
        result = run_measured(env_code + _CHILD, timeout=1800, isolated=False)
    if not result["ok"]:
        return [row(f"log_artifact {size // MiB} MiB", None, "MiB/s", note="failed: "
                    + result["stderr"][-500:])]
    data = json.loads(result["stdout"].strip().splitlines()[-1])
    mib = size / MiB
    med = {k: sorted(v)[len(v) // 2] for k, v in data.items() if isinstance(v, list)}
    ours = mib / med["log"]
    note = (f"median of {reps}, alternating with the baselines in one child; log_artifact = "
            "kernel copy + sha256 of the copy (second thread) + fsync + rename + SQLite commit. "
            f"sha256 alone on this CPU: {_sha256_rate():.0f} MiB/s, the ceiling for any "
            "content-addressed store")
    return [
        row(f"log_artifact {mib:.0f} MiB vs shutil.copyfile", ours, "MiB/s",
            baseline=mib / med["copy"], target=">= 0.7x", baseline_name="shutil.copyfile",
            note=note, spread=_spread(data["log"], mib)),
        row(f"log_artifact {mib:.0f} MiB vs copyfile + fsync", ours, "MiB/s",
            baseline=mib / med["copy_fsync"], baseline_name="copyfile + fsync",
            target=">= 0.95x" if size >= 1 << 30 else "",  # issue 15's target, at 1 GiB
            note="the durable copy: what the store must at least pay"),
        row(f"log_artifact {mib:.0f} MiB: peak memory (VmHWM of the child)",
            result["peak_rss"] / 1e6, "MB", target="< 100 MB",
            note="whole interpreter incl. verta_jupyter and sqlite3; file never read whole"),
        row(f"log_artifact {mib:.0f} MiB: tracemalloc peak", data["traced_peak"] / 1e6, "MB",
            note="Python allocations during the call (the copy is hashed through a mapping: no buffer)"),
    ]


def _sha256_rate() -> float:
    import hashlib

    block, h = bytes(8 * MiB), hashlib.sha256()
    started = time.perf_counter()
    for _ in range(32):
        h.update(block)
    return 256 / (time.perf_counter() - started)


def _spread(samples: list[float], mib: float) -> str:
    rates = sorted(mib / s for s in samples)
    return f"min-max {rates[0]:.0f}-{rates[-1]:.0f} MiB/s, n={len(rates)}"


def listing_rows(runs: int, repeat: int) -> list[dict]:
    from verta_jupyter import Client

    with tempfile.TemporaryDirectory(prefix="vj-bench-list-") as tmp:
        client = Client(store=Path(tmp) / "store")
        experiment = client.set_experiment("big")
        started = time.perf_counter()
        for i in range(runs):
            run = client.set_experiment_run(f"run-{i}")
            run.log_metrics({f"m{k}": i * 0.001 + k for k in range(METRICS)})
        per_run = (time.perf_counter() - started) / runs
        everything = measure(lambda: client.find_runs(), repeat=repeat)
        by_experiment = measure(lambda: experiment.find_runs(), repeat=repeat)
        assert len(client.find_runs()) == runs
        client.store.close()
    return [
        row(f"list {runs:,} runs x {METRICS} metrics: client.find_runs()", everything.in_unit("ms"),
            "ms", target="< 50 ms", spread=everything.spread("ms"),
            note="returns ExperimentRun objects; metrics are read on demand"),
        row(f"list {runs:,} runs: experiment.find_runs()", by_experiment.in_unit("ms"), "ms",
            target="< 50 ms", spread=by_experiment.spread("ms")),
        row(f"log a run with {METRICS} metrics (set_experiment_run + log_metrics)",
            per_run * 1000, "ms", note=f"mean over the {runs:,} runs that filled the store"),
    ]


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see bench/__init__.py)."""
    size = 256 * MiB if quick else 1024 * MiB
    return artifact_rows(size, reps=3 if quick else 5) + listing_rows(RUNS, repeat=7 if quick else 15)


if __name__ == "__main__":
    for r in run(quick="--full" not in sys.argv):
        print(json.dumps(r))
