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


# -- overwrite=False under a race: exactly one writer wins, nothing is replaced ------------------
RACER = '''
import os, sys
sys.path.insert(0, sys.argv[5])
from verta_jupyter import Client
from verta_jupyter.errors import AlreadyExistsError

store, run_id, what, worker, scratch, rounds = sys.argv[1:7]
run = Client(store=store).get_experiment_run(id=run_id)
if what == "model":
    model = __import__(f"racemodel{worker}").RaceModel
print("ready", flush=True)
sys.stdin.read()                          # the start gate: the parent closes stdin for all at once
for i in range(int(rounds)):
    try:
        if what == "artifact":
            path = os.path.join(scratch, f"w{worker}-{i}.bin")
            run.log_artifact(f"k{i}", path)
        else:
            run.log_model(model, sample_input=1, check_rebuild=False)
        print(f"{i} won", flush=True)
    except AlreadyExistsError as exc:
        print(f"{i} lost {exc}", flush=True)
'''

RACE_MODEL = '''
class RaceModel:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"worker": %d}
'''


def _race(tmp_path, what: str, rounds: int, racers: int = 2) -> tuple[Client, str, list[list[str]]]:
    """Start `racers` processes that each log the same keys with overwrite=False at one
    barrier; return the client, the run id and each racer's output lines."""
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("raced")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for w in range(racers):
        (scratch / f"racemodel{w}.py").write_text(RACE_MODEL % w)
        for i in range(rounds):  # big enough that both pass the early check before either records
            (scratch / f"w{w}-{i}.bin").write_bytes(bytes([w]) * (4 << 20))
    (tmp_path / "racer.py").write_text(RACER)
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "racer.py"), str(tmp_path / "store"),
                               run.id, what, str(w), str(scratch), str(rounds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for w in range(racers)]
    try:
        for proc in procs:
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
    for (out, err), proc in zip(outputs, procs):
        assert proc.returncode == 0, err[-3000:]
    return client, run.id, [out.splitlines() for out, _ in outputs]


def _winners(lines: list[list[str]], rounds: int) -> list[int]:
    winners = []
    for i in range(rounds):
        results = [next(line for line in out if line.startswith(f"{i} ")) for out in lines]
        won = [w for w, line in enumerate(results) if line.endswith(" won")]
        assert len(won) == 1, f"round {i}: {results}"  # exactly one winner...
        lost = [line for line in results if " lost " in line]
        assert len(lost) == len(results) - 1 and all("overwrite=True" in m for m in lost), results
        winners.append(won[0])
    return winners


def test_racing_log_artifact_without_overwrite_has_exactly_one_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    rounds = 6
    client, run_id, lines = _race(tmp_path, "artifact", rounds)
    run = client.get_experiment_run(id=run_id)
    for i, winner in enumerate(_winners(lines, rounds)):
        # ...and the stored bytes are the winner's: the loser replaced nothing
        assert Path(run.fetch_artifacts([f"k{i}"])[f"k{i}"]).read_bytes() == bytes([winner]) * (4 << 20)
    result = client.store.check()
    assert result.ok, result.problems


def test_racing_log_model_without_overwrite_has_exactly_one_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    client, run_id, lines = _race(tmp_path, "model", 1)
    [winner] = _winners(lines, 1)
    model = client.get_experiment_run(id=run_id).load_model()
    assert model.predict({}) == {"worker": winner}
    assert client.store.check().ok


OPENER = '''
import sys
from verta_jupyter.tracking.stores.local.store import LocalStore

base, count = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
sys.stdin.read()
for i in range(count):
    LocalStore(f"{base}/s{i}").close()     # every process races to create the same stores
print("done", flush=True)
'''


def test_processes_racing_to_create_stores_all_open_them(tmp_path):
    """A store appears in one rename; a process that looked a moment before must neither call it
    damaged (parts without a marker) nor a stranger's folder."""
    from verta_jupyter.tracking.stores.local.store import LocalStore

    (tmp_path / "opener.py").write_text(OPENER)
    count = 40
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "opener.py"), str(tmp_path / "base"),
                               str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    try:
        for proc in procs:
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
    for (out, err), proc in zip(outputs, procs):
        assert proc.returncode == 0 and out.strip() == "done", err[-2000:]
    for i in range(count):
        assert LocalStore.check_path(tmp_path / "base" / f"s{i}").ok
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == sorted(f"s{i}" for i in range(count))
