"""Smoke tests of the benchmark runner: `python -m bench` really runs a module in a child process
and writes a report whose rows carry a baseline and a ratio; a missing module is shown, not fatal.

The benchmark numbers themselves are not asserted (benchmarks report, they do not gate)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import common
from bench.__main__ import READING_END, READING_START

ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VJ_BENCH_SMOKE": "1", "IPYTHONDIR": str(tmp_path / "ipython")}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_capture_module_writes_rows_with_baselines_and_ratios(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text(f"old\n{READING_START}\nmy reading survives\n{READING_END}\n")

    proc = _bench("--only", "capture", "--quick", "--output", str(out), tmp_path=tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert "## capture (bench/bench_capture.py" in report
    assert "not run" not in report, report
    assert "| cores | memory | CPU | OS |" in report and "| python |" in report
    rows = [ln for ln in report.splitlines() if ln.startswith("| capture + save, 10 helpers")]
    assert rows and re.search(r"\| [0-9.]+x \|", rows[0]), rows
    scores = [ln for ln in report.splitlines() if ln.startswith("| capture robustness")]
    assert any("(cloudpickle alone)" in ln and re.search(r"\| [0-9.]+x \|", ln) for ln in scores), scores
    assert "my reading survives" in report and report.startswith("# Benchmark results")


def test_missing_module_is_reported_as_not_run(tmp_path):
    out = tmp_path / "RESULTS.md"

    proc = _bench("--only", "nosuch", "--output", str(out), tmp_path=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "**not run: bench/bench_nosuch.py does not exist**" in out.read_text()


@pytest.mark.parametrize("value, unit, baseline, target, expected", [
    (40.0, "ms", None, "< 50 ms", True),
    (2.0, "s", None, "< 1500 ms", False),
    (0.8, "", 1.0, ">= 0.7x", True),
    (60.0, "MB", None, "< 100 MB", True),
    (3.0, "ms", 2.0, "ratio <= 1.2", False),
    (1.1, "", None, "exponent <= 1.2", True),
    (float("nan"), "", None, "exponent <= 1.2", None),
    (1.0, "ms", None, "", None),
])
def test_targets_are_judged_in_the_rows_units(value, unit, baseline, target, expected):
    assert common.judge(common.row("x", value, unit, baseline=baseline, target=target)) is expected


def test_timing_reports_median_and_spread():
    timing = common.Timing([0.003, 0.001, 0.002, 0.010])
    assert timing.median == pytest.approx(0.0025)
    assert timing.spread("ms").startswith("IQR 1.75-4.75 ms")
    assert common.fit_exponent([10, 100, 1000], [1.0, 10.0, 100.0]) == pytest.approx(1.0)


def test_peak_memory_is_the_childs_own_and_tracemalloc_sees_python_allocations():
    ballast = bytearray(200_000_000)  # a big parent must not inflate the child's peak
    small = common.run_measured("pass")
    big = common.run_measured("x = bytearray(60_000_000)")
    assert small["ok"] and big["ok"]
    assert small["peak_rss"] < 100e6 < len(ballast)
    assert big["peak_rss"] - small["peak_rss"] > 50e6
    _, peak = common.tracemalloc_peak(lambda: len(bytearray(5_000_000)))
    assert peak >= 5_000_000


def test_a_row_that_moved_more_than_2x_since_the_last_report_is_called_out():
    from bench.__main__ import render

    result = {"name": "capture", "error": None, "seconds": 1.0,
              "rows": [common.row("capture, 1000 helpers", 1300.0, "ms", baseline=20.0)]}
    before = render([result], full=False, seconds=1.0)
    result["rows"] = [common.row("capture, 1000 helpers", 47600.0, "ms", baseline=20.0)]

    after = render([result], full=False, seconds=1.0, previous=before)

    assert "Changed more than 2x since the previous report: capture: capture, 1000 helpers: " \
           "1,300 ms -> 47,600 ms." in after
    assert "Changed more than 2x" not in render([result], full=False, seconds=1.0, previous=after)
