"""`%%verta_model` cost for the seed example, against bare execution and MLflow's pyfunc.

    python -m bench.bench_magic          # quick
    python -m bench.bench_magic --full   # more repeats

Rows:
- the magic's own overhead: capture + validate + package + log to a LocalStore, without the
  fresh-process rebuild (target: median <= 10 ms), against bare execution of the same cell;
- the full magic as a user runs it (cell + all checks incl. the fresh-process rebuild + log +
  summary; runs a pause apart, and back to back), against `mlflow.pyfunc.log_model` of the same
  class when MLflow is importable (here or in .venv-mlflow), default and with pinned
  `pip_requirements` (target: ours <= 0.5x the pinned one);
- where the full magic's time goes, check by check (medians from the validation report);
- the clean-environment proof (`proof="env"`) of the quickstart model (WordCounter): the first
  proof, which builds the environment from requirements.txt (uv when installed), and a cached
  proof with the same requirements, against the fresh-process proof of this interpreter.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MLFLOW_PYTHON, _clean_env, measure, module_main, profile_top, row

SEED = '''class MyModel(object):
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"echo": data}
'''
SAMPLE = {"text": "hi"}


def _shell(store: Path):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext verta_jupyter").raise_error()
    shell.run_cell(f"from verta_jupyter import Client\nrun = Client(store=r'{store}')"
                   ".set_experiment_run('bench')").raise_error()
    return shell


def _overhead_rows(shell, repeat: int) -> list[dict]:
    from verta_jupyter.validation.validate import prepare_model

    run, ns = shell.user_ns["run"], shell.user_ns
    bare = measure(lambda: shell.run_cell(SEED, store_history=False).raise_error(), repeat=repeat)
    cls = ns["MyModel"]

    def log_without_rebuild():
        run.log_model(cls, sample_input=SAMPLE, overwrite=True, namespace=ns, cell_source=SEED,
                      check_rebuild=False)

    def validate_and_package():
        prepare_model(cls, namespace=ns, cell_source=SEED, sample_input=SAMPLE, check_rebuild=False)

    overhead = measure(log_without_rebuild, repeat=repeat)
    ours = measure(validate_and_package, repeat=repeat)
    missed = overhead.in_unit("ms") > 10
    return [row("%%verta_model overhead: capture + validate + log, no rebuild (seed example)",
                overhead.in_unit("ms"), "ms", baseline=bare.in_unit("ms"), target="<= 10 ms",
                spread=overhead.spread("ms"), baseline_name="bare execution of the same cell",
                note="run.log_model(MyModel, sample_input=..., check_rebuild=False) into a LocalStore "
                     "on a temp dir; baseline: the same cell run by IPython without the magic",
                profile=profile_top(log_without_rebuild, sort="tottime") if missed else ""),
            row("  of which capture + validate + package (no store write)", ours.in_unit("ms"), "ms",
                baseline=bare.in_unit("ms"), spread=ours.spread("ms"),
                baseline_name="bare execution of the same cell",
                note="prepare_model(..., check_rebuild=False); the rest of the overhead is the "
                     "store's crash-safe write (blob + fsync per new package file, none for bytes already "
                     "stored; one transaction)")]


USER_PAUSE = 0.5  # seconds between two runs of the cell


def _full_rows(shell, repeat: int) -> tuple[list[dict], float]:
    cell = f"%%verta_model --no-panel --overwrite --sample '{json.dumps(SAMPLE)}'\n{SEED}"
    from IPython.utils.capture import capture_output

    def full_magic():
        with capture_output():
            shell.run_cell(cell, store_history=False).raise_error()

    # A user reads the summary before re-running: the untimed pause lets the spare worker that
    # each run starts in the background finish booting, as it does in a notebook.
    timing = measure(full_magic, repeat=repeat, setup=lambda: time.sleep(USER_PAUSE))
    rushed = measure(full_magic, repeat=repeat)
    return [row("%%verta_model full: cell + checks + fresh-process rebuild + log + summary",
                timing.median, "s", target="< 1.5 s", spread=timing.spread("s"),
                note=f"the magic exactly as a notebook user runs it, runs {USER_PAUSE} s apart "
                     "(untimed; --no-panel; the panel's worker starts lazily and is measured in "
                     "bench_worker)"),
            row("  the same, run back to back (the spare worker is still booting)",
                rushed.median, "s", spread=rushed.spread("s"), baseline=timing.median,
                baseline_name="runs a pause apart",
                note="no pause between runs: the proof waits for the spare started by the run "
                     "before, or starts its own")], timing.median


def _breakdown_rows(shell, repeat: int) -> list[dict]:
    """Median seconds per check over `repeat` validations with the rebuild."""
    from verta_jupyter.validation.validate import validate

    cls, ns = shell.user_ns["MyModel"], shell.user_ns
    per_check: dict[str, list[float]] = {}
    for _ in range(repeat):
        report = validate(cls, namespace=ns, cell_source=SEED, sample_input=SAMPLE)
        for check in report.checks:
            per_check.setdefault(check.name, []).append(check.seconds)
    return [row(f"  check: {name}", statistics.median(times) * 1000, "ms",
                note="median time of this check inside validate()")
            for name, times in per_check.items()]


QUICKSTART = '''STOPWORDS = {"the", "a", "an", "of", "on"}


def tokenize(text):
    return [word for word in text.lower().split() if word not in STOPWORDS]


class WordCounter:
    """Counts the words that matter and finds the longest."""

    def __init__(self, artifacts):
        self.artifacts = artifacts

    def predict(self, data):
        words = tokenize(data["text"])
        return {"words": len(words), "longest": max(words, key=len) if words else None}
'''
QUICKSTART_SAMPLE = {"text": "the quick brown fox"}


def _env_proof_rows(shell, quick: bool) -> list[dict]:
    """First (environment built) and cached clean-environment proofs of the quickstart model."""
    import os

    from verta_jupyter.validation.validate import validate
    from verta_jupyter.worker.envproof import ENV_CACHE_VARIABLE, _uv_binary

    shell.run_cell(QUICKSTART, store_history=False).raise_error()
    cls, ns = shell.user_ns["WordCounter"], shell.user_ns
    caches = tempfile.TemporaryDirectory(prefix="vj-bench-envs-")
    fresh = iter(range(1000))
    saved = os.environ.get(ENV_CACHE_VARIABLE)

    def proof(kind: str) -> None:
        report = validate(cls, namespace=ns, sample_input=QUICKSTART_SAMPLE, proof=kind)
        assert report.ok, report.error_message()

    def new_cache() -> None:
        os.environ[ENV_CACHE_VARIABLE] = str(Path(caches.name) / f"c{next(fresh)}")

    try:
        process = measure(lambda: proof("process"), repeat=5 if quick else 15)
        first = measure(lambda: proof("env"), setup=new_cache, repeat=3 if quick else 9, warmup=0)
        cached = measure(lambda: proof("env"), repeat=5 if quick else 15)
    finally:
        if saved is None:
            os.environ.pop(ENV_CACHE_VARIABLE, None)
        else:
            os.environ[ENV_CACHE_VARIABLE] = saved
        caches.cleanup()
    installer = "uv" if _uv_binary() else "venv + pip (uv not installed)"
    base = dict(baseline=process.median, baseline_name="validate() with the fresh-process proof")
    return [row(f"env proof, first: build the environment + rebuild + predict (quickstart, {installer})",
                first.median, "s", spread=first.spread("s"), **base,
                note="validate(WordCounter, proof=\"env\") with an empty environment cache: creates "
                     "the venv from requirements.txt (none: standard library only), then the worker "
                     "rebuilds and predicts there"),
            row("env proof, cached: the same requirements again (quickstart)", cached.median, "s",
                spread=cached.spread("s"), target="< 0.5 s", **base,
                note="the environment is found by the requirements' hash: only the worker runs")]


_MLFLOW = r'''
import json, os, statistics, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
import mlflow
root = tempfile.mkdtemp(prefix="vj-bench-mlflow-")
os.chdir(root)  # MLflow puts artifacts in ./mlruns: here, never in the checkout
mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
mlflow.set_experiment("bench")

class MyModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return {"echo": model_input}

def log(pinned):
    with mlflow.start_run():
        kwargs = {"pip_requirements": [f"mlflow=={mlflow.__version__}"]} if pinned else {}
        mlflow.pyfunc.log_model(name="model", python_model=MyModel(), **kwargs)

out = {"version": mlflow.__version__}
for pinned, repeat in ((False, int(sys.argv[1])), (True, int(sys.argv[2]))):
    log(pinned)  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter(); log(pinned); samples.append(time.perf_counter() - started)
    out["pinned" if pinned else "default"] = samples
import shutil; shutil.rmtree(root, ignore_errors=True)
print(json.dumps(out))
'''


def _mlflow_python() -> str | None:
    try:
        import mlflow  # noqa: F401
        return sys.executable
    except ImportError:
        return str(MLFLOW_PYTHON) if MLFLOW_PYTHON.exists() else None


def _mlflow_rows(ours: float, quick: bool) -> list[dict]:
    python = _mlflow_python()
    if python is None:
        return [row("mlflow.pyfunc.log_model", None, "s", note="NOT MEASURED: mlflow is not importable "
                    "here nor in .venv-mlflow (scripts/test.sh sets that venv up)")]
    repeat = ("3", "5") if quick else ("7", "11")
    proc = subprocess.run([python, "-c", _MLFLOW, *repeat], capture_output=True, text=True,
                          timeout=900, env=_clean_env())
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return [row("mlflow.pyfunc.log_model", None, "s", note=f"NOT MEASURED: mlflow failed: {tail[0]}")]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for key, label in (("default", "default (infers requirements)"), ("pinned", "pinned pip_requirements")):
        median = statistics.median(data[key])
        rows.append(row(f"mlflow.pyfunc.log_model {label}, mlflow {data['version']}", median, "s",
                        baseline=ours, baseline_name="our full %%verta_model",
                        # issue 15: ours <= 0.5x MLflow's fastest setting, i.e. MLflow / ours >= 2
                        target=">= 2x" if key == "pinned" else "",
                        note="same class as a PythonModel, sqlite tracking store on a temp dir; "
                             f"n={len(data[key])}; ratio = MLflow / ours (> 1: we are faster, and "
                             "MLflow checks no rebuild)"))
    return rows


def run(quick: bool = True) -> list[dict]:
    """Rows for bench/RESULTS.md (see bench/__init__.py)."""
    repeat = 9 if quick else 31
    with tempfile.TemporaryDirectory(prefix="vj-bench-magic-") as tmp:
        shell = _shell(Path(tmp) / "store")
        rows = _overhead_rows(shell, repeat)
        full, seconds = _full_rows(shell, 5 if quick else 15)
        rows += full
        rows += _breakdown_rows(shell, 5 if quick else 15)
        rows += _env_proof_rows(shell, quick)
    rows += _mlflow_rows(seconds, quick)
    return rows


def main(argv: list[str] | None = None) -> int:
    return module_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
