"""Crash safety: SIGKILL a process at random moments while it logs runs, metrics, artifacts and
models; after every kill the store passes its integrity check, and everything the killed
processes reported as logged is still there, byte for byte.

"Reported" means the log call returned and the worker wrote a line about it; a kill between the
call and the line only means we check less, never that we accept a broken store.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from verta_jupyter import Client
from verta_jupyter.tracking.stores.local.store import LocalStore

KILLS = 50
METRICS = 5

MODEL_MODULE = '''
import hashlib


class DigestModel:
    def __init__(self, artifacts):
        with open(artifacts["data"], "rb") as f:
            self.digest = hashlib.sha256(f.read()).hexdigest()

    def predict(self, data):
        return {"digest": self.digest, "echo": data}
'''

WORKER = '''
import hashlib, json, os, random, sys, uuid
sys.path.insert(0, sys.argv[2])
from crashmodel import DigestModel
from verta_jupyter import Client

client = Client(store=sys.argv[1])
out = open(sys.argv[3], "a")
scratch = sys.argv[4]
rng = random.Random(int(sys.argv[5]))

def report(**record):
    out.write(json.dumps(record) + "\\n")
    out.flush()

for i in range(10 ** 6):
    run = client.set_experiment_run(f"w{sys.argv[5]}-{i}")
    report(step="run", id=run.id)
    run.log_metrics({f"m{k}": i + k for k in range(%(metrics)d)})
    report(step="metrics", id=run.id, i=i)
    data = os.urandom(rng.randint(1, 6) << 20)
    path = os.path.join(scratch, "data.bin")
    with open(path, "wb") as f:
        f.write(data)
    run.log_artifact("data", path)
    report(step="artifact", id=run.id, sha=hashlib.sha256(data).hexdigest())
    if rng.random() < 0.5:
        run.log_model(DigestModel, artifacts=["data"], sample_input={"x": 1}, check_rebuild=False)
        report(step="model", id=run.id, sha=hashlib.sha256(data).hexdigest())
''' % {"metrics": METRICS}


@pytest.mark.slow
def test_sigkill_while_logging_never_breaks_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    store_dir, log = tmp_path / "store", tmp_path / "reported.jsonl"
    (tmp_path / "crashmodel.py").write_text(MODEL_MODULE)
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "scratch").mkdir()
    rng = random.Random(20261126)
    LocalStore(store_dir).close()
    for kill in range(KILLS):
        _run_and_kill(tmp_path, store_dir, log, seed=kill, delay=rng.uniform(0.05, 1.2))
        store = LocalStore(store_dir)
        result = store.check(verify_blobs=(kill % 10 == 9))
        store.close()
        assert result.ok, f"after kill {kill + 1}: {result.problems}"
    records = [json.loads(line) for line in log.read_text().splitlines(keepends=True)
               if line.endswith("\n")]
    _verify_reported(store_dir, records)
    steps = [r["step"] for r in records]
    assert steps.count("artifact") >= 20 and steps.count("model") >= 5, "too little logged"


def _run_and_kill(tmp_path: Path, store_dir: Path, log: Path, *, seed: int, delay: float) -> None:
    # A new session, so the kill also takes any child the worker started.
    proc = subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(store_dir),
                             str(tmp_path), str(log), str(tmp_path / "scratch"), str(seed)],
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.wait(timeout=delay)  # the random moment of the crash, not a synchronisation
    except subprocess.TimeoutExpired:
        pass
    else:
        pytest.fail(f"worker exited by itself: {proc.stderr.read().decode()[-2000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()


def _verify_reported(store_dir: Path, records: list[dict]) -> None:
    client = Client(store=store_dir)
    result = client.store.check(verify_blobs=True)
    assert result.ok, result.problems
    for run in client.find_runs():
        assert len(run.get_metrics()) in (0, METRICS), f"half-logged metrics on {run.name}"
    checked_models = 0
    for record in records:
        run = client.get_experiment_run(id=record["id"])
        if record["step"] == "metrics":
            assert run.get_metrics() == {f"m{k}": record["i"] + k for k in range(METRICS)}
        elif record["step"] == "artifact":
            path = run.fetch_artifacts(["data"])["data"]
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == record["sha"]
        elif record["step"] == "model" and checked_models < 10:
            checked_models += 1
            assert run.load_model().predict(1) == {"digest": record["sha"], "echo": 1}
