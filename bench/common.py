"""Timing, memory, machine facts and row building shared by every benchmark module.

Timing is repeat + median + spread (interquartile range, plus min/max) with a warm-up call,
because single timings on a shared 2-core machine are noise. Peak memory is measured in a
child process (its own `ru_maxrss`), so the benchmark's own allocations never count.
"""
from __future__ import annotations

import cProfile
import io
import json
import math
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_PYTHON = ROOT / ".venv-mlflow" / "bin" / "python"


@dataclass
class Timing:
    """Seconds per call over `n` repeats: median with quartiles and extremes."""

    samples: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return _quantile(self.samples, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.samples, 0.75)

    def spread(self, unit: str = "ms") -> str:
        """'IQR a-b unit, min-max c-d, n=N' in `unit` (s, ms or us)."""
        k = _TIME_UNITS[unit]
        return (f"IQR {self.q1 / k:.3g}-{self.q3 / k:.3g} {unit}, "
                f"min-max {min(self.samples) / k:.3g}-{max(self.samples) / k:.3g}, n={self.n}")

    def in_unit(self, unit: str = "ms") -> float:
        return self.median / _TIME_UNITS[unit]


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SIZE_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(fn, *, repeat: int = 5, warmup: int = 1, setup=None, budget: float | None = None) -> Timing:
    """Time `fn()` `repeat` times after `warmup` untimed calls; `setup()` runs untimed before each.

    With `budget` (seconds), stop repeating once the timed calls have used it (at least one
    sample is always taken), so a pathological size reports n=1 instead of stalling the run.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    timing = Timing()
    for _ in range(repeat):
        if setup is not None:
            setup()
        started = time.perf_counter()
        fn()
        timing.samples.append(time.perf_counter() - started)
        if budget is not None and sum(timing.samples) >= budget:
            break
    return timing


def row(name: str, value: float | None, unit: str, *, baseline: float | None = None,
        target: str = "", note: str = "", spread: str = "", baseline_name: str = "",
        passed: bool | None = None, profile: str = "") -> dict:
    """A result row (see bench/__init__.py); ratio is value / baseline when both are numbers."""
    ratio = None
    if isinstance(value, (int, float)) and isinstance(baseline, (int, float)) and baseline:
        ratio = value / baseline
    out = {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio,
           "target": target, "note": note}
    for key, val in (("spread", spread), ("baseline_name", baseline_name), ("profile", profile)):
        if val:
            out[key] = val
    if passed is not None:
        out["passed"] = passed
    return out


_TARGET = re.compile(r"^\s*(ratio|exponent)?\s*(<=|<|>=|>|≤|≥)\s*([0-9.eE+-]+)\s*([^\s]*)\s*(.*)$")


def judge(row_: dict) -> bool | None:
    """Pass (True) / miss (False) / cannot tell (None) for a row's `target`.

    Understands "< 50 ms", "<= 1.5 s", "< 100 MB" (value, unit-converted), "ratio <= 1.2",
    ">= 0.7x" (ratio), "exponent <= 1.2" (value). An explicit `passed` key wins.
    """
    if isinstance(row_.get("passed"), bool):
        return row_["passed"]
    target = str(row_.get("target") or "")
    match = _TARGET.match(target)
    if not match:
        return None
    kind, op, number, unit, rest = match.groups()
    limit = float(number)
    uses_ratio = kind == "ratio" or unit in ("x", "×") or rest.startswith(("x", "×"))
    actual = row_.get("ratio") if uses_ratio else _convert(row_.get("value"), row_.get("unit", ""), unit)
    if not isinstance(actual, (int, float)) or math.isnan(actual):
        return None
    return {"<": actual < limit, "<=": actual <= limit, "≤": actual <= limit,
            ">": actual > limit, ">=": actual >= limit, "≥": actual >= limit}[op]


def _convert(value, unit: str, target_unit: str):
    """`value` in `unit` expressed in `target_unit` (time or size), or None when incompatible."""
    if not isinstance(value, (int, float)):
        return None
    if not target_unit or target_unit == unit:
        return value
    for table in (_TIME_UNITS, _SIZE_UNITS):
        if unit in table and target_unit in table:
            return value * table[unit] / table[target_unit]
    return None


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): 1.0 is linear growth, 2.0 quadratic."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-12)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den if den else float("nan")


def profile_top(fn, *, limit: int = 12, sort: str = "cumulative", callers_of: str = "") -> str:
    """cProfile of one `fn()` call: the top `limit` entries (and who calls `callers_of`)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(limit)
    lines = [ln.rstrip() for ln in out.getvalue().splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    text = "\n".join(ln for ln in lines[start:] if ln.strip())
    if callers_of:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_callers(callers_of)
        found = [ln.rstrip() for ln in out.getvalue().splitlines() if "<-" in ln or ln.startswith(" " * 20)]
        text += "\n\ncalled from:\n" + "\n".join(ln for ln in found if ln.strip())
    return text


def tracemalloc_peak(fn) -> tuple[object, int]:
    """(fn(), peak bytes of Python allocations during the call): what our code holds, not the heap."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# VmHWM is this process's own high-water mark; ru_maxrss is not enough on Linux: a child
# forked from a big parent starts with the parent's pages counted and keeps that maximum.
_PEAK_PROBE = """
import sys as _s
try:
    _peak = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
except (OSError, IndexError):
    import resource as _r
    _peak = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss * 1024
_s.stderr.write('\\n@@peak %d\\n' % _peak)
"""


def run_measured(code: str, *, python: str | None = None, cwd: str | None = None,
                 timeout: float = 300.0, isolated: bool = True) -> dict:
    """Run `code` in a fresh interpreter; return {seconds (wall), peak_rss (bytes), stdout, ok, stderr}.

    Peak RSS is the child's own high-water mark (VmHWM), read in the child after `code` ran.
    """
    wrapper = code + _PEAK_PROBE
    args = [python or sys.executable] + (["-I"] if isolated else []) + ["-c", wrapper]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=_clean_env())
    seconds = time.perf_counter() - started
    peak = None
    found = re.findall(r"@@peak (\d+)", proc.stderr)
    if found:
        peak = int(found[-1])
    stderr = re.sub(r"\n?@@peak \d+\n?", "", proc.stderr)
    return {"seconds": seconds, "peak_rss": peak, "stdout": proc.stdout, "stderr": stderr,
            "ok": proc.returncode == 0}


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def dir_size(path) -> int:
    """Total bytes of the regular files under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def machine_info() -> dict:
    """Cores, memory, CPU model and OS of this machine."""
    return {"cores": os.cpu_count(), "memory": _memory(), "cpu": _cpu_model(),
            "os": f"{platform.system()} {platform.release()} ({_os_name()})",
            "machine": platform.machine()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def versions() -> dict:
    """Versions of Python and the libraries the numbers depend on ('absent' when missing)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("verta-jupyter", "numpy", "pandas", "cloudpickle", "scikit-learn", "ipython", "dill"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    out["mlflow"] = mlflow_version() or "absent"
    return out


def mlflow_version() -> str | None:
    """MLflow's version in its own venv (/work/main/.venv-mlflow), or None when it is absent."""
    if not MLFLOW_PYTHON.exists():
        return None
    proc = subprocess.run([str(MLFLOW_PYTHON), "-c", "import mlflow; print(mlflow.__version__)"],
                          capture_output=True, text=True, timeout=120, env=_clean_env())
    return proc.stdout.strip() if proc.returncode == 0 else None


def dumps_rows(rows: list[dict]) -> str:
    """Rows as JSON (numbers kept; anything odd turned into text)."""
    return json.dumps(rows, default=str, indent=1)


def print_rows(rows: list[dict]) -> None:
    """A module's rows on the terminal (`python -m bench.bench_X`): value, baseline, ratio,
    target, then the note indented."""
    import textwrap

    for result in rows:
        value = "n/a" if result["value"] is None else f"{result['value']:.3g} {result['unit']}"
        base = (f"  (baseline {result['baseline']:.3g} {result['unit']})"
                if result.get("baseline") is not None else "")
        ratio = f"  ratio {result['ratio']:.2f}" if result.get("ratio") is not None else ""
        target = f"  target {result['target']}" if result.get("target") else ""
        print(f"{result['name']}: {value}{base}{ratio}{target}")
        if result.get("note"):
            print(textwrap.indent(result["note"], "    "))


def module_main(run, argv: list[str] | None = None) -> int:
    """The command line of a benchmark module: quick sizes unless `--full` is given."""
    argv = sys.argv[1:] if argv is None else argv
    print_rows(run(quick="--full" not in argv))
    return 0

