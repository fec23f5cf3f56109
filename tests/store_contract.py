"""The store contract: behaviour every `Store` (local SQLite, MLflow REST) must show.

Subclass `StoreContract` in a test module and provide a `store` fixture that yields a fresh,
empty store; every test here then runs against it. The tests use only the protocol in
`verta_jupyter/tracking/stores/base.py` and the public tracking API on top of it, never a
store's internals, so they stay store-agnostic. A store's own quirks get their own tests next to
the subclass.
"""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verta_jupyter import Client
from verta_jupyter.errors import (AlreadyExistsError, NoSampleWarning, NotFoundError, StoreError, ValidationError,
                                  VertaError)
from verta_jupyter.tracking.stores.base import MODEL_KEY, Entity, Store, tree_digest

REPO = Path(__file__).resolve().parent.parent


class EchoModel:
    """A model that reads a JSON artifact: the round-trip tests log and rebuild it."""

    def __init__(self, artifacts):
        with open(artifacts["vocab"]) as f:
            self.vocab = json.load(f)

    def predict(self, data):
        return {"known": [w for w in data["words"] if w in self.vocab], "size": len(self.vocab)}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40, "sub/deeper/c": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class StoreContract:
    """Mix-in of contract tests; subclasses provide the `store` fixture (a fresh empty store)."""

    @pytest.fixture(autouse=True)
    def _private_cache(self, tmp_path, monkeypatch):
        monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))

    @pytest.fixture
    def run_entity(self, store) -> Entity:
        project = store.get_or_create("project", "p")
        experiment = store.get_or_create("experiment", "e", project.id)
        return store.get_or_create("run", "r", experiment.id)

    # -- protocol: entities ----------------------------------------------------------------
    def test_is_a_store(self, store):
        assert isinstance(store, Store)
        assert isinstance(store.location, str) and store.location

    def test_get_or_create_is_idempotent_and_scoped_by_parent(self, store):
        p = store.get_or_create("project", "proj")
        assert store.get_or_create("project", "proj") == p
        e1 = store.get_or_create("experiment", "same", p.id)
        p2 = store.get_or_create("project", "other")
        e2 = store.get_or_create("experiment", "same", p2.id)
        assert e1.id != e2.id and e1.parent_id == p.id and e2.parent_id == p2.id
        assert store.get("experiment", e1.id) == e1

    def test_name_none_creates_a_new_entity_each_time(self, store, run_entity):
        a = store.get_or_create("run", None, run_entity.parent_id)
        b = store.get_or_create("run", None, run_entity.parent_id)
        assert a.id != b.id and a.name and b.name and a.name != b.name

    def test_model_versions_are_numbered_in_order(self, store):
        model = store.get_or_create("registered_model", "m")
        names = [store.get_or_create("model_version", None, model.id).name for _ in range(3)]
        assert names == ["1", "2", "3"]

    def test_find_filters(self, store):
        p = store.get_or_create("project", "p")
        e1 = store.get_or_create("experiment", "e1", p.id)
        e2 = store.get_or_create("experiment", "e2", p.id)
        r1 = store.get_or_create("run", "r1", e1.id)
        r2 = store.get_or_create("run", "r2", e2.id)
        store.put_fields("run", r2.id, "tags", {"best": None})
        assert [r.id for r in store.find("run", parent_id=e1.id)] == [r1.id]
        assert {r.id for r in store.find("run", ancestor_id=p.id)} == {r1.id, r2.id}
        assert [r.id for r in store.find("run", name="r2")] == [r2.id]
        assert [r.id for r in store.find("run", tag="best")] == [r2.id]
        assert store.find("run", tag="nope") == []

    def test_unknown_ids_raise_not_found(self, store):
        for kind in ("project", "experiment", "run", "registered_model", "model_version"):
            with pytest.raises(NotFoundError):
                store.get(kind, "0123456789abcdef0123456789abcdef")
        with pytest.raises(NotFoundError):
            store.get_fields("run", "0123456789abcdef0123456789abcdef", "metrics")

    # -- protocol: fields ------------------------------------------------------------------
    def test_fields_round_trip_with_their_types(self, store, run_entity):
        values = {"i": 3, "f": 0.25, "s": "adam", "b": True, "n": None,
                  "l": [1, "two", 3.0], "d": {"k": [1, {"x": None}]}}
        store.put_fields("run", run_entity.id, "attributes", values)
        got = store.get_fields("run", run_entity.id, "attributes")
        assert got == values
        assert type(got["i"]) is int and type(got["f"]) is float and type(got["b"]) is bool

    def test_fields_replace_and_stay_separate(self, store, run_entity):
        store.put_fields("run", run_entity.id, "metrics", {"acc": 0.5, "loss": float("nan")})
        store.put_fields("run", run_entity.id, "metrics", {"acc": 0.75})
        metrics = store.get_fields("run", run_entity.id, "metrics")
        assert metrics["acc"] == 0.75 and math.isnan(metrics["loss"])
        assert store.get_fields("run", run_entity.id, "hyperparameters") == {}

    # -- protocol: artifacts ---------------------------------------------------------------
    def test_file_artifact_round_trip(self, store, run_entity, tmp_path):
        data = b"\x00binary\xff" * 1000
        src = tmp_path / "weights.bin"
        src.write_bytes(data)
        seen: list[int] = []
        info = store.put_artifact("run", run_entity.id, "w", src, type="file", meta={"m": 1},
                                  progress=seen.append)
        assert (info.key, info.type, info.filename, info.size) == ("w", "file", "weights.bin", len(data))
        assert info.digest == sha256(data) and dict(info.meta) == {"m": 1}
        assert sum(seen) >= len(data)
        assert store.artifact_info("run", run_entity.id, "w") == info
        out = store.fetch_artifact("run", run_entity.id, "w", tmp_path / "out.bin")
        assert Path(out).read_bytes() == data

    def test_directory_artifact_round_trip(self, store, run_entity, tmp_path):
        files = make_tree(tmp_path / "vocab_dir")
        info = store.put_artifact("run", run_entity.id, "d", tmp_path / "vocab_dir", type="directory")
        assert info.size == sum(len(b) for b in files.values())
        assert info.digest == tree_digest((rel, sha256(b), len(b)) for rel, b in files.items())
        out = store.fetch_artifact("run", run_entity.id, "d", tmp_path / "fetched")
        assert read_tree(Path(out)) == files

    def test_put_replaces_an_artifact(self, store, run_entity, tmp_path):
        for content in (b"old", b"new!"):
            (tmp_path / "f").write_bytes(content)
            store.put_artifact("run", run_entity.id, "k", tmp_path / "f", type="file")
        assert [a.key for a in store.list_artifacts("run", run_entity.id)] == ["k"]
        out = store.fetch_artifact("run", run_entity.id, "k", tmp_path / "o")
        assert Path(out).read_bytes() == b"new!"

    def test_missing_artifact_and_existing_destination(self, store, run_entity, tmp_path):
        with pytest.raises(NotFoundError):
            store.artifact_info("run", run_entity.id, "nope")
        (tmp_path / "f").write_bytes(b"x")
        store.put_artifact("run", run_entity.id, "k", tmp_path / "f", type="file")
        with pytest.raises(StoreError):
            store.fetch_artifact("run", run_entity.id, "k", tmp_path / "f")  # exists already
        assert (tmp_path / "f").read_bytes() == b"x"

    def test_check_passes_on_a_healthy_store(self, store, run_entity, tmp_path):
        (tmp_path / "f").write_bytes(b"x" * 100)
        store.put_artifact("run", run_entity.id, "k", tmp_path / "f", type="file")
        result = store.check()
        assert result.ok, result.problems

    # -- tracking API over the store -------------------------------------------------------
    def test_client_get_or_create_and_find(self, store):
        client = Client(store=store)
        run = client.set_experiment_run("baseline")
        assert client.set_experiment_run("baseline") == run
        assert client.get_experiment_run(id=run.id) == run
        run.log_tag("best")
        assert [r.id for r in client.find_runs(tag="best")] == [run.id]
        assert [r.id for r in client.find_runs(project="default", experiment="default")] == [run.id]
        assert [r.id for r in client.find_runs(name="baseline")] == [run.id]
        with pytest.raises(NotFoundError):
            client.get_experiment_run(id="no-such-run-id")

    def test_verta_overwrite_rules(self, store):
        run = Client(store=store).set_experiment_run()
        run.log_hyperparameters({"lr": 0.1, "opt": "adam"})
        run.log_metric("acc", 0.5)
        with pytest.raises(AlreadyExistsError, match="acc"):
            run.log_metric("acc", 0.6)
        with pytest.raises(AlreadyExistsError, match="lr"):
            run.log_hyperparameters({"new": 1, "lr": 0.2})
        assert run.get_hyperparameters() == {"lr": 0.1, "opt": "adam"}  # "new" was not written
        run.log_metric("acc", 0.6, overwrite=True)
        assert run.get_metric("acc") == 0.6
        run.log_attribute("layers", [64, 32])
        run.log_tags(["a", "b"])
        run.log_tag("a")
        assert run.get_attribute("layers") == [64, 32] and run.get_tags() == ["a", "b"]

    def test_bad_keys_and_values_leave_the_run_unchanged(self, store, tmp_path):
        run = Client(store=store).set_experiment_run()
        (tmp_path / "f").write_text("x")
        for key in ("../x", "", "a" * 500, "a/b", ".hidden"):
            with pytest.raises(ValueError):
                run.log_artifact(key, str(tmp_path / "f"))
            with pytest.raises(ValueError):
                run.log_metric(key, 1.0)
        for value in ([1, 2], {"a": 1}, "high", None):
            with pytest.raises(TypeError):
                run.log_metric("m", value)
        with pytest.raises(TypeError):
            run.log_hyperparameter("h", [1, 2])
        with pytest.raises(ValidationError) as reserved:
            run.log_artifact("model.pkl", str(tmp_path / "f"))
        assert reserved.value.codes == ["VJ302"]
        assert run.get_metrics() == {} and run.get_hyperparameters() == {}
        assert run.get_artifact_keys() == []

    def test_log_artifact_file_directory_and_object(self, store, tmp_path):
        run = Client(store=store).set_experiment_run()
        (tmp_path / "vocab.json").write_text('["a", "b"]')
        make_tree(tmp_path / "tree")
        run.log_artifact("vocab", str(tmp_path / "vocab.json"))
        run.log_artifact("tree", tmp_path / "tree")
        run.log_artifact("obj", {"weights": [1.5, 2.5]})
        with pytest.raises(AlreadyExistsError):
            run.log_artifact("vocab", str(tmp_path / "vocab.json"))
        paths = run.fetch_artifacts(["vocab", "tree"])
        assert Path(paths["vocab"]).name == "vocab.json"
        assert Path(paths["vocab"]).read_text() == '["a", "b"]'
        assert read_tree(Path(paths["tree"])) == make_tree(tmp_path / "again")
        assert run.get_artifact("obj") == {"weights": [1.5, 2.5]}
        assert sorted(run.get_artifact_keys()) == ["obj", "tree", "vocab"]

    def test_log_model_refusals_write_nothing(self, store, tmp_path):
        run = Client(store=store).set_experiment_run()
        (tmp_path / "v.json").write_text('["a"]')
        run.log_artifact("vocab", str(tmp_path / "v.json"))
        with pytest.raises(ValidationError) as instance:
            run.log_model(EchoModel(artifacts={"vocab": str(tmp_path / "v.json")}))
        assert instance.value.codes == ["VJ103"]
        with pytest.raises(ValidationError) as unknown:
            run.log_model(EchoModel, artifacts=["vocab", "never"])
        assert unknown.value.codes == ["VJ301"]
        with pytest.raises(ValidationError) as reserved:
            run.log_model(EchoModel, artifacts=["model.pkl"])
        assert reserved.value.codes == ["VJ302"]
        assert [a.key for a in store.list_artifacts("run", run.id)] == ["vocab"]

    def test_log_model_round_trip_and_overwrite(self, store, tmp_path):
        run = Client(store=store).set_experiment_run()
        (tmp_path / "v.json").write_text('["a", "b", "c"]')
        run.log_artifact("vocab", str(tmp_path / "v.json"))
        logged = run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a", "z"]})
        assert logged.class_name == "EchoModel" and "EchoModel" in repr(logged)
        assert MODEL_KEY in [a.key for a in store.list_artifacts("run", run.id)]
        cls = run.get_model()
        assert cls is not EchoModel and cls.__name__ == "EchoModel"
        assert run.load_model().predict({"words": ["b", "q"]}) == {"known": ["b"], "size": 3}
        with pytest.raises(AlreadyExistsError):
            run.log_model(EchoModel, artifacts=["vocab"])
        with pytest.warns(NoSampleWarning):
            run.log_model(EchoModel, artifacts=["vocab"], overwrite=True)
        target = Path(run.download_model(tmp_path / "pkg"))
        assert (target / "model.py").is_file() and (target / "verta_model.json").is_file()
        assert store.check().ok

    def test_registered_model_version_from_run(self, store, tmp_path):
        client = Client(store=store)
        run = client.set_experiment_run()
        (tmp_path / "v.json").write_text('["x"]')
        run.log_artifact("vocab", str(tmp_path / "v.json"))
        run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["x"]})
        registered = client.get_or_create_registered_model("echo")
        version = registered.create_version_from_run(run)
        assert version.name == "1" and registered.versions == [version]
        assert version.load_model().predict({"words": ["x", "y"]}) == {"known": ["x"], "size": 1}

    def test_fresh_process_round_trip(self, store, tmp_path):
        run = Client(store=store).set_experiment_run("fresh")
        (tmp_path / "v.json").write_text('["a", "b"]')
        run.log_artifact("vocab", str(tmp_path / "v.json"))
        run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a"]})
        expected = run.load_model().predict({"words": ["a", "b", "c"]})
        script = textwrap.dedent(f"""
            import json, sys
            from verta_jupyter import Client
            run = Client(store={store.location!r}).get_experiment_run(id={run.id!r})
            paths = run.fetch_artifacts(["vocab"])
            out = run.load_model().predict({{"words": ["a", "b", "c"]}})
            print(json.dumps({{"out": out, "vocab": open(paths["vocab"]).read(),
                              "has_test_module": "store_contract" in sys.modules}}))
        """)
        env = {"VERTA_JUPYTER_CACHE": str(tmp_path / "cache2"), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result == {"out": expected, "vocab": '["a", "b"]', "has_test_module": False}

    def test_errors_are_verta_errors(self, store):
        run = Client(store=store).set_experiment_run()
        with pytest.raises(VertaError):
            run.get_metric("missing")
        with pytest.raises(VertaError):
            run.get_model()
        with pytest.raises(VertaError):
            run.fetch_artifacts(["missing"])
