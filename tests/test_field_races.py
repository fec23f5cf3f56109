"""`log_metric` / `log_hyperparameter` / `log_attribute` with overwrite=False under real races:
N processes log the same key at one barrier, on a real SQLite store and on a real `mlflow
server`. Exactly one wins, the stored value is the winner's, every other racer gets "already
logged; pass overwrite=True", and overwrite=True still replaces."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from mlflow_server import mlflow_server  # noqa: F401 (pytest fixture)
from verta_jupyter import Client
from verta_jupyter.errors import AlreadyExistsError

RACERS = 4
ROUNDS = 3
FIELDS = ("metric", "hyperparameter", "attribute")

RACER = '''
import sys
from verta_jupyter import Client
from verta_jupyter.errors import AlreadyExistsError

store, run_id, worker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
run = Client(store=store).get_experiment_run(id=run_id)
run.get_metrics()  # connection and imports warm before the first barrier
for i in range(rounds):
    for what in %(fields)r:
        print("ready", flush=True)
        sys.stdin.readline()  # the barrier: every racer gets its "go" line at once
        value = {"metric": worker * 1000 + i, "hyperparameter": f"w{worker}-{i}",
                 "attribute": {"worker": worker, "round": i}}[what]
        try:
            getattr(run, "log_" + what)(f"{what}{i}", value)
            print(f"{what} {i} won", flush=True)
        except AlreadyExistsError as exc:
            print(f"{what} {i} lost {exc}", flush=True)
''' % {"fields": FIELDS}


def _race(tmp_path, store: str, run_id: str) -> list[list[str]]:
    """RACERS processes log the same keys; one barrier per key. Each racer's result lines."""
    script = tmp_path / "field_racer.py"
    script.write_text(RACER)
    env = {**os.environ, "VERTA_JUPYTER_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, str(script), store, run_id, str(w), str(ROUNDS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for w in range(RACERS)]
    results: list[list[str]] = [[] for _ in procs]
    try:
        for _ in range(ROUNDS * len(FIELDS)):
            for proc in procs:
                line = proc.stdout.readline().strip()
                assert line == "ready", (line, proc.stderr.read()[-3000:] if proc.poll() else "")
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for out, proc in zip(results, procs):
                out.append(proc.stdout.readline().strip())
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _check_one_winner_each(run, results: list[list[str]]) -> None:
    getters = {"metric": run.get_metric, "hyperparameter": run.get_hyperparameter,
               "attribute": run.get_attribute}
    for what in FIELDS:
        for i in range(ROUNDS):
            lines = [next(line for line in out if line.startswith(f"{what} {i} ")) for out in results]
            won = [w for w, line in enumerate(lines) if line.endswith(" won")]
            assert len(won) == 1, f"{what} round {i}: {lines}"  # exactly one winner...
            losers = [line for line in lines if " lost " in line]
            assert len(losers) == RACERS - 1, lines
            for message in losers:  # ...the others were told, naming the key and the remedy
                assert f"'{what}{i}'" in message and " already " in message, message
                assert "overwrite=True" in message, message
            w = won[0]
            expected = {"metric": w * 1000 + i, "hyperparameter": f"w{w}-{i}",
                        "attribute": {"worker": w, "round": i}}[what]
            assert getters[what](f"{what}{i}") == expected  # ...and the value is the winner's


def _overwrite_still_replaces(run) -> None:
    run.log_metric("metric0", 0.5, overwrite=True)
    run.log_hyperparameter("hyperparameter0", "replaced", overwrite=True)
    run.log_attribute("attribute0", [1, 2], overwrite=True)
    assert run.get_metric("metric0") == 0.5
    assert run.get_hyperparameter("hyperparameter0") == "replaced"
    assert run.get_attribute("attribute0") == [1, 2]
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        run.log_metric("metric0", 0.75)
    assert run.get_metric("metric0") == 0.5


def test_racing_field_writers_on_the_local_store_have_exactly_one_winner(tmp_path):
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("raced")
    results = _race(tmp_path, str(tmp_path / "store"), run.id)
    _check_one_winner_each(run, results)
    _overwrite_still_replaces(run)


@pytest.mark.mlflow
def test_racing_field_writers_on_an_mlflow_server_have_exactly_one_winner(tmp_path, mlflow_server):
    url = f"{mlflow_server.url}?namespace=r{uuid.uuid4().hex[:10]}"
    client = Client(store=url)
    run = client.set_experiment_run("raced")
    results = _race(tmp_path, url, run.id)
    _check_one_winner_each(run, results)
    _overwrite_still_replaces(run)
    assert run.get_hyperparameters() == {f"hyperparameter{i}": run.get_hyperparameter(
        f"hyperparameter{i}") for i in range(ROUNDS)}  # the claims are not user params


def test_a_store_refuses_a_logged_key_itself_and_writes_nothing(tmp_path):
    """The store's own check (what a racer that passed the early check meets): all or none."""
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("r")
    run.log_metrics({"acc": 0.5})
    store = client.store
    with pytest.raises(AlreadyExistsError, match=r"metric 'acc' is already logged on run .*"
                                                 r"overwrite=True"):
        store.put_fields("run", run.id, "metrics", {"loss": 1.0, "acc": 0.9}, overwrite=False)
    assert run.get_metrics() == {"acc": 0.5}  # "loss" was not written either


@pytest.mark.mlflow
def test_an_unfinished_mlflow_field_claim_blocks_overwrite_false_but_not_true(mlflow_server):
    """A call that claimed a key and stopped before writing it: later overwrite=False calls
    say so; overwrite=True writes it."""
    from verta_jupyter.tracking.stores.mlflow.store import FIELD_CLAIM_PARAM

    client = Client(store=f"{mlflow_server.url}?namespace=u{uuid.uuid4().hex[:10]}")
    run = client.set_experiment_run("r")
    client.store.http.call("POST", "runs/log-parameter", {
        "run_id": run.id, "key": FIELD_CLAIM_PARAM + "metrics.acc", "value": "0badc0ffee"})
    with pytest.raises(AlreadyExistsError, match="'acc' is already being logged by another process"):
        run.log_metric("acc", 0.5)
    assert run.get_metrics() == {}
    run.log_metric("acc", 0.5, overwrite=True)
    assert run.get_metric("acc") == 0.5
