"""`python -m bench`: run every benchmark module and rewrite bench/RESULTS.md.

    python -m bench                  # quick sizes (81 s on 2 idle cores; allow 5 minutes when busy)
    python -m bench --full           # the large sizes too
    python -m bench --only capture   # one module (repeatable; "bench_capture" also works)
    python -m bench --output PATH    # write the report elsewhere

Each module runs in its own child process (a crash, a hang or a leaked IPython singleton in one
never spoils another) with a timeout; a module that is missing, fails or times out is shown in
the report as "not run: reason" instead of stopping the run. The hand-written reading between
the `reading` markers of an existing report is kept when the report is rewritten.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import common

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"
# Report order follows the user's path: the magic, capture, predict, store, big models, MLflow.
EXPECTED = ["magic", "capture", "worker", "store", "big", "mlflow"]
READING_START, READING_END = "<!-- reading:start -->", "<!-- reading:end -->"
PROFILE_BUDGET_S = 240.0  # skip fallback profiles once the run has taken this long (quick mode)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        return _child(args.child, args.rows, quick=not args.full)
    names = _selected(args.only)
    started = time.perf_counter()
    results = []
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        result = _run_module(name, full=args.full, timeout=args.timeout)
        if _wants_profile(result) and (args.full or time.perf_counter() - started < PROFILE_BUDGET_S):
            result["module_profile"] = _profile_module(name, full=args.full, timeout=args.timeout)
        print(f"[bench] {name}: {_status(result)} ({result['seconds']:.1f} s)", flush=True)
        results.append(result)
    previous = Path(args.output).read_text() if Path(args.output).exists() else ""
    report = render(results, full=args.full, seconds=time.perf_counter() - started,
                    reading=_existing_reading(args.output), only=args.only, previous=previous)
    Path(args.output).write_text(report)
    print(f"[bench] wrote {args.output}")
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (the default)")
    mode.add_argument("--full", action="store_true", help="the large sizes too")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this module (repeatable; e.g. capture, store)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="report path (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per module before it is killed (default: 600 quick, 3600 full)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _available() -> list[str]:
    found = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    return EXPECTED + [n for n in found if n not in EXPECTED]  # a missing expected one shows as not run


def _selected(only: list[str]) -> list[str]:
    if not only:
        return _available()
    names = [o.removeprefix("bench_").removesuffix(".py") for part in only for o in part.split(",") if o]
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- child side

def _child(name: str, rows_path: str, *, quick: bool) -> int:
    """Import bench.bench_NAME, call run(quick), write its rows (or the failure) as JSON."""
    try:
        module = importlib.import_module(f"bench.bench_{name}")
        rows = module.run(quick=quick)
        payload = {"rows": [_checked(r) for r in rows]}
    except BaseException as exc:  # report anything, even SystemExit, as "not run"
        payload = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    Path(rows_path).write_text(common.dumps_rows(payload))
    return 0


def _checked(r) -> dict:
    if not isinstance(r, dict) or "name" not in r or "value" not in r:
        raise TypeError(f"a benchmark row must be a dict with at least name and value, got {r!r:.120}")
    return r


# ---------------------------------------------------------------- parent side

# Children run in a scratch working directory (whatever a module leaves there, e.g. MLflow's
# ./mlruns, is thrown away); this puts the repo first on their sys.path without PYTHONPATH,
# which would leak into the fresh processes the benchmarks start themselves.
_BOOT = f"import sys; sys.path.insert(0, {str(common.ROOT)!r}); from bench.__main__ import main\n"


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="vj-bench-ipython-"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    mlflow_bin = common.ROOT / ".venv-mlflow" / "bin" / "mlflow"
    if mlflow_bin.exists():
        env.setdefault("VERTA_JUPYTER_MLFLOW_BIN", str(mlflow_bin))
    return env


def _run_module(name: str, *, full: bool, timeout: float | None) -> dict:
    result = {"name": name, "rows": [], "error": None, "seconds": 0.0}
    if not (HERE / f"bench_{name}.py").exists():
        result["error"] = f"bench/bench_{name}.py does not exist"
        return result
    timeout = timeout or (3600.0 if full else 600.0)
    with tempfile.TemporaryDirectory(prefix="vj-bench-") as tmp:
        rows_path = Path(tmp) / "rows.json"
        argv = ["--child", name, "--rows", str(rows_path)] + (["--full"] if full else [])
        args = [sys.executable, "-c", _BOOT + f"sys.exit(main({argv!r}))"]
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=tmp, env=_child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            output, _ = proc.communicate()
            result["error"] = f"timed out after {timeout:g} s"
        result["seconds"] = time.perf_counter() - started
        result["log_tail"] = "\n".join((output or "").splitlines()[-15:])
        if result["error"] is None:
            _read_child(result, rows_path, proc.returncode)
    return result


def _read_child(result: dict, rows_path: Path, returncode: int) -> None:
    if not rows_path.exists():
        last = result["log_tail"].splitlines()[-1:] or ["no output"]
        result["error"] = f"the module's process exited with code {returncode}: {last[0]}"
        return
    payload = json.loads(rows_path.read_text())
    result["rows"] = payload.get("rows", [])
    if payload.get("error"):
        result["error"] = payload["error"]
        result["traceback"] = payload.get("traceback", "")


def _wants_profile(result: dict) -> bool:
    misses = [r for r in result["rows"] if common.judge(r) is False]
    return bool(misses) and not any(r.get("profile") for r in misses)


def _profile_module(name: str, *, full: bool, timeout: float | None) -> str:
    """cProfile of a whole second run of a module whose misses came without a row profile."""
    code = (_BOOT + "sys.argv = ['bench']\n"
            "from bench import common, bench_%s as m\n"
            "print(common.profile_top(lambda: m.run(quick=%r), limit=20, sort='tottime'))\n") % (name, not full)
    try:
        with tempfile.TemporaryDirectory(prefix="vj-bench-") as tmp:
            proc = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=_child_env(),
                                  capture_output=True, text=True, timeout=min(timeout or 300.0, 300.0))
    except subprocess.TimeoutExpired:
        return "(profiling run timed out)"
    return proc.stdout.strip() or f"(profiling run failed: {proc.stderr.strip()[-300:]})"


def _status(result: dict) -> str:
    if result["error"]:
        return f"not run: {result['error']}"
    verdicts = [common.judge(r) for r in result["rows"]]
    return f"{len(verdicts)} rows, {verdicts.count(True)} pass, {verdicts.count(False)} miss"


def _existing_reading(path) -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        return ""
    if READING_START in text and READING_END in text:
        return text.split(READING_START, 1)[1].split(READING_END, 1)[0].strip("\n")
    return ""


# ---------------------------------------------------------------- report

def render(results: list[dict], *, full: bool, seconds: float, reading: str = "", only=(),
           previous: str = "") -> str:
    """The RESULTS.md text for these module results."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "full" if full else "quick"
    command = "python -m bench" + (" --full" if full else "") + "".join(f" --only {o}" for o in only)
    lines = ["# Benchmark results", "",
             f"Generated by `{command}` ({mode} sizes) on {now}; the run took {seconds:.0f} s. "
             "Regenerate with `.venv/bin/python -m bench` (`--full` for the large sizes, "
             "`--only NAME` for one module). Every ratio is the row's value / its baseline, both "
             "measured in the same run on this machine: for times and sizes below 1 means we are "
             "faster or smaller, for throughputs above 1 means we are faster; a row's note says "
             "when its ratio reads differently.", ""]
    lines += _machine_section()
    lines += _summary(results)
    lines += _changes(results, previous)
    lines += ["## Reading", "", READING_START, reading or "(No reading written yet.)", READING_END, ""]
    for result in results:
        lines += _module_section(result)
    return "\n".join(lines).rstrip() + "\n"


def _machine_section() -> list[str]:
    m, v = common.machine_info(), common.versions()
    out = ["## Machine and versions", "", "| cores | memory | CPU | OS |", "|---|---|---|---|",
           f"| {m['cores']} | {m['memory']} | {m['cpu']} ({m['machine']}) | {m['os']} |", ""]
    out += ["| " + " | ".join(v) + " |", "|" + "---|" * len(v), "| " + " | ".join(v.values()) + " |", ""]
    if v.get("mlflow") == "absent":
        out += ["MLflow is not installed (expected in `.venv-mlflow`, see scripts/setup.sh): "
                "baselines that need it are skipped and say so in their rows.", ""]
    return out


def _summary(results: list[dict]) -> list[str]:
    rows = [(res["name"], r) for res in results for r in res["rows"]]
    verdicts = [common.judge(r) for _, r in rows]
    out = ["## Summary", "",
           f"{len(rows)} rows from {sum(1 for r in results if not r['error'])} modules: "
           f"{verdicts.count(True)} targets met, {verdicts.count(False)} missed, "
           f"{verdicts.count(None)} rows without a target.", ""]
    missed = [f"{mod}: {r['name']}" for (mod, r), v in zip(rows, verdicts) if v is False]
    if missed:
        out += ["Missed: " + "; ".join(missed) + ".", ""]
    not_run = [f"{r['name']} ({r['error']})" for r in results if r["error"]]
    if not_run:
        out += ["Not run: " + "; ".join(not_run) + ".", ""]
    return out


def _previous_values(text: str) -> dict:
    """{(module, row name): value} read back from an earlier report's tables."""
    values, module = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            module = line[3:].split(" ", 1)[0]
        elif line.startswith("| ") and module and not line.startswith(("| benchmark", "|---")):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            number = cells[1].split(" ", 1)[0].replace(",", "") if len(cells) > 1 else ""
            try:
                values[(module, cells[0])] = float(number)
            except ValueError:
                continue
    return values


def _changes(results: list[dict], previous: str) -> list[str]:
    """Rows whose value moved more than 2x since the report this run replaces."""
    old = _previous_values(previous)
    moved = []
    for res in results:
        for r in res["rows"]:
            before, now = old.get((res["name"], r["name"].strip())), r.get("value")
            if isinstance(now, (int, float)) and before and now and not 0.5 <= now / before <= 2.0:
                moved.append(f"{res['name']}: {r['name']}: {_num(before, r.get('unit', ''))} -> "
                             f"{_num(now, r.get('unit', ''))}")
    if not moved:
        return []
    return ["Changed more than 2x since the previous report: " + "; ".join(moved) + ".", ""]


def _module_section(result: dict) -> list[str]:
    head = f"## {result['name']} (bench/bench_{result['name']}.py, {result['seconds']:.0f} s)"
    out = [head, ""]
    if result["error"]:
        out += [f"**not run: {result['error']}**", ""]
        tail = (result.get("traceback") or result.get("log_tail") or "").strip()
        if tail:
            out += ["```text", tail[-2000:], "```", ""]
        if not result["rows"]:
            return out
    out += ["| benchmark | ours (median) | spread | baseline | ratio | target | result | note |",
            "|---|---|---|---|---|---|---|---|"]
    out += [_table_row(r) for r in result["rows"]]
    out.append("")
    out += _misses(result)
    return out


def _table_row(r: dict) -> str:
    verdict = {True: "pass", False: "**miss**", None: "—"}[common.judge(r)]
    unit = r.get("unit") or ""
    base = r.get("baseline")
    base_text = _num(base, unit) if isinstance(base, (int, float)) else (str(base) if base else "—")
    if r.get("baseline_name"):
        base_text = f"{base_text} ({r['baseline_name']})" if base_text != "—" else f"— ({r['baseline_name']})"
    ratio = f"{r['ratio']:.3g}x" if isinstance(r.get("ratio"), (int, float)) else "—"
    cells = [r["name"], _num(r.get("value"), unit), r.get("spread") or "—", base_text, ratio,
             r.get("target") or "—", verdict, r.get("note") or ""]
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _num(value, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value} {unit}".strip()
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def _misses(result: dict) -> list[str]:
    out = []
    for r in result["rows"]:
        if common.judge(r) is False and r.get("profile"):
            out += [f"Profile for the missed target **{r['name']}** (cProfile, top entries):", "",
                    "```text", r["profile"].strip(), "```", ""]
    if result.get("module_profile"):
        out += ["The module's rows missed a target without a row profile; cProfile of a second "
                "run of the whole module (top entries by own time; work done in child processes "
                "does not show here):", "",
                "```text", result["module_profile"].strip(), "```", ""]
    return out


if __name__ == "__main__":
    sys.exit(main())
