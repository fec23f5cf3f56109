"""MLflow store: `run.log_model` vs `mlflow.pyfunc.log_model`, and artifact upload throughput.

Both against one real `mlflow server` on 127.0.0.1 started here (from .venv-mlflow), in the
same MLflow run:
- `run.log_model(EchoModel, artifacts=["vocab"], sample_input=...)` to an MlflowStore: capture,
  validation with a fresh-process rebuild, package upload, and the MLflow model files;
- `mlflow.pyfunc.log_model` of the same class (wrapped in a PythonModel, same artifact, same
  input example), timed inside the mlflow venv around the call only — with MLflow's default
  requirement inference, and with pinned `pip_requirements`;
- `MlflowStore.put_artifact` of one file (hash + streamed PUT + publishing tag) vs a raw
  `requests.put` of the same file to the same proxied artifact endpoint.

    python -m bench.bench_mlflow [--full]
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import MLFLOW_PYTHON, ROOT, measure, row

MiB = 1024 * 1024


class EchoModel:
    """The benchmarked model: reads a JSON vocabulary artifact, echoes the known words."""

    def __init__(self, artifacts):
        with open(artifacts["vocab"]) as f:
            self.vocab = json.load(f)

    def predict(self, data):
        return {"known": [w for w in data["words"] if w in self.vocab], "size": len(self.vocab)}


SAMPLE = {"words": ["a", "z"]}

_MLFLOW_SCRIPT = '''
import json, sys, time, warnings
warnings.simplefilter("ignore")
import mlflow
from mlflow.pyfunc import PythonModel
url, run_id, vocab, repeat, pins = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
exec(sys.stdin.read())  # the same EchoModel source we log

class Wrapped(PythonModel):
    def load_context(self, context):
        self.model = EchoModel(artifacts=context.artifacts)
    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)

mlflow.set_tracking_uri(url)
out = {"default": [], "pinned": []}
with mlflow.start_run(run_id=run_id):
    for variant in ("pinned", "default"):
        for i in range(repeat + 1):  # the first call of each variant is a warm-up
            started = time.perf_counter()
            mlflow.pyfunc.log_model(name=f"mlflow_{variant}_{i}", python_model=Wrapped(),
                                    artifacts={"vocab": vocab}, input_example=%r,
                                    pip_requirements=pins.split(",") if variant == "pinned" else None)
            if i:
                out[variant].append(time.perf_counter() - started)
print(json.dumps(out))
''' % (SAMPLE,)


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see bench/__init__.py)."""
    if not MLFLOW_PYTHON.exists():
        note = f"not run: mlflow is absent ({MLFLOW_PYTHON}); scripts/setup.sh test installs it"
        return [row("MLflow store: run.log_model vs mlflow.pyfunc.log_model", None, "s", note=note),
                row("MLflow store: artifact upload vs raw requests.put", None, "MiB/s", note=note)]
    sys.path.insert(0, str(ROOT / "tests"))
    from mlflow_server import MlflowServer

    with tempfile.TemporaryDirectory(prefix="vj-bench-mlflow-") as tmp:
        server = MlflowServer(Path(tmp) / "server").start()
        try:
            return (log_model_rows(server.url, Path(tmp), repeat=3 if quick else 7)
                    + upload_rows(server.url, Path(tmp), size=64 * MiB if quick else 512 * MiB,
                                  repeat=5))
        finally:
            server.stop()


def _run(url: str, tmp: Path):
    from verta_jupyter import Client
    from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

    store = MlflowStore(url, namespace=f"bench{uuid.uuid4().hex[:6]}")
    run = Client(store=store).set_experiment_run("bench")
    vocab = tmp / "vocab.json"
    vocab.write_text(json.dumps([f"w{i}" for i in range(1000)] + ["a"]))
    run.log_artifact("vocab", str(vocab))
    return store, run, vocab


def log_model_rows(url: str, tmp: Path, repeat: int) -> list[dict]:
    store, run, vocab = _run(url, tmp)
    ours = measure(lambda: run.log_model(EchoModel, artifacts=["vocab"], sample_input=SAMPLE,
                                         overwrite=True), repeat=repeat, warmup=1)
    assert run.load_model().predict(SAMPLE) == {"known": ["a"], "size": 1001}
    pins = ",".join(_pins())
    proc = subprocess.run([str(MLFLOW_PYTHON), "-c", _MLFLOW_SCRIPT, url, run.id, str(vocab),
                           str(repeat), pins], input=inspect.getsource(EchoModel),
                          capture_output=True, text=True, timeout=1800, cwd=tmp)
    if proc.returncode != 0:
        note = "mlflow.pyfunc.log_model failed: " + proc.stderr.strip().splitlines()[-1][:300]
        return [row("run.log_model (validated) vs mlflow.pyfunc.log_model", ours.in_unit("s"), "s",
                    note=note, spread=ours.spread("s"))]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    default, pinned = (sorted(theirs[k])[len(theirs[k]) // 2] for k in ("default", "pinned"))
    note = ("ours: capture + validation incl. a fresh-process rebuild + upload of the package and "
            "the MLflow model files; theirs: the log_model call only (inside the mlflow venv), "
            "same class, artifact, input example and MLflow run")
    return [
        row("run.log_model (validated, rebuilt) vs mlflow.pyfunc.log_model (default)",
            ours.in_unit("s"), "s", baseline=default, target="ratio < 1", note=note,
            spread=ours.spread("s"), baseline_name="mlflow.pyfunc.log_model, inferred requirements"),
        row("run.log_model (validated, rebuilt) vs mlflow.pyfunc.log_model (pinned requirements)",
            ours.in_unit("s"), "s", baseline=pinned, target="", spread=ours.spread("s"),
            baseline_name="mlflow.pyfunc.log_model, pip_requirements given",
            note="pinned requirements skip MLflow's inference subprocess; MLflow validates nothing "
                 "in a fresh process, we do"),
    ]


def _pins() -> list[str]:
    from importlib.metadata import version

    return [f"cloudpickle=={version('cloudpickle')}"]


def upload_rows(url: str, tmp: Path, size: int, repeat: int) -> list[dict]:
    import requests

    store, run, _ = _run(url, tmp)
    blob = tmp / "blob.bin"
    with open(blob, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    root = store.server.artifact_root(run.id)
    raw_url = store.http.artifact_url(f"{root}/raw/blob.bin")

    def raw_put():
        with open(blob, "rb") as f:
            requests.put(raw_url, data=f, timeout=600).raise_for_status()

    ours = measure(lambda: store.put_artifact("run", run.id, "blob", blob, type="file"),
                   repeat=repeat, warmup=1)
    raw = measure(raw_put, repeat=repeat, warmup=1)
    mib = size / MiB
    return [row(f"artifact upload {mib:.0f} MiB: MlflowStore.put_artifact vs raw requests.put",
                mib / ours.median, "MiB/s", baseline=mib / raw.median, target=">= 0.8x",
                spread=f"ours {ours.spread('s')}; raw {raw.spread('s')}",
                baseline_name="requests.put of the same file to the same endpoint",
                note="ours also hashes the file (sha256) and publishes it with a run tag")]


if __name__ == "__main__":
    for r in run(quick="--full" not in sys.argv):
        print(json.dumps(r))
