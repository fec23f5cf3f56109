"""Concurrency: 8 processes log 50 runs each into one store at the same moment; all 400 runs and
their artifacts are there afterwards, and no process ever saw "database is locked"."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from verta_jupyter import Client

PROCESSES = 8
RUNS = 50

WORKER = '''
import os, sys
from verta_jupyter import Client

store, worker, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = Client(store=store)
client.set_experiment("shared")           # every process races for the same experiment
print("ready", flush=True)
sys.stdin.read()                          # the start gate: the parent closes stdin for all at once
for i in range(%(runs)d):
    run = client.set_experiment_run(f"w{worker}-r{i}")
    run.log_hyperparameters({"worker": worker, "i": i})
    run.log_metrics({"score": worker * 1000 + i, "loss": 1.0 / (i + 1)})
    run.log_tag(f"worker-{worker}")
    path = os.path.join(scratch, f"w{worker}.txt")
    with open(path, "w") as f:
        f.write(f"artifact of worker {worker} run {i}\\n" * 100)
    run.log_artifact("own", path)
    shared = os.path.join(scratch, f"shared{worker}.txt")
    with open(shared, "w") as f:
        f.write("the same bytes in every run\\n")
    run.log_artifact("shared", shared)
print("done", worker)
''' % {"runs": RUNS}


@pytest.mark.slow
def test_eight_processes_log_fifty_runs_each(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "worker.py").write_text(WORKER)
    store_dir, scratch = tmp_path / "store", tmp_path / "scratch"
    scratch.mkdir()
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(store_dir),
                               str(w), str(scratch)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(PROCESSES)]
    try:
        for proc in procs:  # a barrier: every worker is ready before any starts logging
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        for proc in procs:
            proc.stdin.close()
            proc.stdin = None
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for w, ((out, err), proc) in enumerate(zip(outputs, procs)):
        assert "locked" not in err.lower(), err
        assert proc.returncode == 0 and out.strip() == f"done {w}", err[-2000:]
    _verify(Client(store=store_dir))


def _verify(client: Client) -> None:
    runs = client.find_runs(project="default", experiment="shared")
    assert len(runs) == PROCESSES * RUNS
    assert len({r.name for r in runs}) == PROCESSES * RUNS
    assert len(client.store.find("experiment")) == 1  # the race created one experiment, not 8
    for w in range(PROCESSES):
        mine = client.find_runs(tag=f"worker-{w}")
        assert sorted(r.get_hyperparameter("i") for r in mine) == list(range(RUNS))
    for run in runs:
        w, i = run.get_hyperparameter("worker"), run.get_hyperparameter("i")
        assert run.get_metric("score") == w * 1000 + i
        paths = run.fetch_artifacts(["own", "shared"])
        assert Path(paths["own"]).read_text() == f"artifact of worker {w} run {i}\n" * 100
    digests = {client.store.artifact_info("run", r.id, "shared").digest for r in runs}
    assert len(digests) == 1  # identical bytes from 8 processes: one blob
    result = client.store.check()
    assert result.ok, result.problems
    digest = hashlib.sha256(b"the same bytes in every run\n").hexdigest()
    assert client.store.blobs.exists(digest)
