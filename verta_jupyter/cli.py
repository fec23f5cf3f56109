"""The `verta-jupyter` command: look into a store from a terminal.

    verta-jupyter runs list [--project P] [--experiment E] [--tag T] [--name N] [--json]
    verta-jupyter runs show RUN_ID [--json]
    verta-jupyter model manifest (RUN_ID | --registered-model NAME --version V)
    verta-jupyter model source   (RUN_ID | --registered-model NAME --version V)
    verta-jupyter model download (RUN_ID | --registered-model NAME --version V) DEST
    verta-jupyter model export-mlflow (RUN_ID | --registered-model NAME --version V) DEST
    verta-jupyter model verify   (RUN_ID | --registered-model NAME --version V) [--env [--python 3.X]]
    verta-jupyter store check [--quick]
    verta-jupyter store gc [--min-age SECONDS]
    verta-jupyter envs list | prune [--keep N] [--days D] [--all]   (the --env proof's cache)
    verta-jupyter --version

`python -m verta_jupyter ...` is the same command.

Every store command takes `--store PATH_OR_URL` (default: $VERTA_JUPYTER_STORE, else ./verta_store)
and `--help`. Errors print one line to stderr and exit with status 1; `store check` exits 1 when
it finds damage.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ._version import __version__
from .errors import VertaError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `verta-jupyter` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return args.handler(args) or 0
    except VertaError as exc:
        print(f"verta-jupyter: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `verta-jupyter runs list | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verta-jupyter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"verta-jupyter {__version__}",
                        help="print the version (on stdout) and exit")
    groups = parser.add_subparsers(title="commands", metavar="{runs,model,store,envs}")
    runs = _group(groups, "runs", "list and show experiment runs")
    _command(runs, "list", "list runs, oldest first", _runs_list, _add_run_filters)
    _command(runs, "show", "show one run", _runs_show,
             lambda p: (p.add_argument("run_id", help="the run's id"), _add_json(p)))
    model = _group(groups, "model", "look at or download a logged model")
    _command(model, "manifest", "print the model package's manifest (JSON)", _model_manifest,
             _add_model_target)
    _command(model, "source", "print the model package's model.py", _model_source,
             _add_model_target)
    _command(model, "download", "write the model package to a new folder", _model_download,
             lambda p: (_add_model_target(p), p.add_argument("dest", help="a new or empty folder")))
    _command(model, "export-mlflow", "write the model as an MLflow model directory (pyfunc)",
             _model_export_mlflow,
             lambda p: (_add_model_target(p), p.add_argument("dest", help="a new folder")))
    _command(model, "verify", "rebuild the model in a fresh process (--env: in a clean environment "
             "holding only its requirements.txt) and check its sample output (exit 1 if not)",
             _model_verify, _add_verify_arguments)
    store = _group(groups, "store", "maintain a store")
    _command(store, "check", "verify the store's integrity (exit 1 on damage)", _store_check,
             lambda p: p.add_argument("--quick", action="store_true",
                                      help="skip re-hashing every blob"))
    _command(store, "gc", "delete what interrupted writes left behind (local stores)",
             _store_gc, lambda p: p.add_argument(
                 "--min-age", type=float, default=3600.0, metavar="SECONDS",
                 help="only files older than this (default 3600: never a write in progress)"))
    envs = _group(groups, "envs", "the clean environments `model verify --env` keeps")
    _env_command(envs, "list", "list them, most recently used first", _envs_list, lambda p: None)
    _env_command(envs, "prune", "remove the least recently used (never one in use)", _envs_prune,
                 _add_prune_arguments)
    return parser


def _env_command(sub, name: str, help: str, handler: Callable, add_arguments: Callable) -> None:
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument("--cache", default=None, help="the cache folder (default: "
                        "$VERTA_JUPYTER_ENV_CACHE, else ~/.cache/verta_jupyter/envs)")
    add_arguments(parser)
    parser.set_defaults(handler=handler)


def _add_prune_arguments(parser) -> None:
    from .worker.envcache import DEFAULT_DAYS, DEFAULT_KEEP

    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP, metavar="N",
                        help=f"keep the N most recently used (default {DEFAULT_KEEP})")
    parser.add_argument("--days", type=float, default=DEFAULT_DAYS, metavar="D",
                        help=f"and any used in the last D days (default {DEFAULT_DAYS:g})")
    parser.add_argument("--all", action="store_true", help="remove every one not in use")


def _group(groups, name: str, help: str):
    parser = groups.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 1)[1])
    return parser.add_subparsers(title="commands")


def _command(sub, name: str, help: str, handler: Callable, add_arguments: Callable) -> None:
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument("--store", default=None,
                        help="store folder or MLflow URL (default: $VERTA_JUPYTER_STORE, "
                             "else ./verta_store)")
    add_arguments(parser)
    parser.set_defaults(handler=handler)


def _add_json(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _add_run_filters(parser) -> None:
    parser.add_argument("--project", help="only runs of this project (name)")
    parser.add_argument("--experiment", help="only runs of this experiment (name)")
    parser.add_argument("--tag", help="only runs with this tag")
    parser.add_argument("--name", help="only runs with this name")
    _add_json(parser)


def _add_model_target(parser) -> None:
    parser.add_argument("run_id", nargs="?", help="the run the model was logged to")
    parser.add_argument("--registered-model", metavar="NAME", help="a registered model instead")
    parser.add_argument("--version", help="its version (with --registered-model)")


def _add_verify_arguments(parser) -> None:
    _add_model_target(parser)
    parser.add_argument("--env", action="store_true", help="prove it in a clean environment "
                        "built from requirements.txt (cached by its hash)")
    parser.add_argument("--python", metavar="3.X", help="with --env: build the environment for "
                        "this Python version (one installed on this machine)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long the model may take to build and predict (default 60)")


def _store_spec(args) -> str:
    """The store to open; a path must already be a store (reading never creates one)."""
    import os

    from .tracking.client import DEFAULT_STORE
    from .tracking.stores.local.store import MARKER

    spec = args.store or os.environ.get("VERTA_JUPYTER_STORE") or DEFAULT_STORE
    if not spec.startswith(("http://", "https://")) and not (Path(spec) / MARKER).is_file():
        raise VertaError(f"no verta_jupyter store at {Path(spec).resolve()}; pass --store PATH "
                         "(or set VERTA_JUPYTER_STORE)")
    return spec


def _client(args):
    from .tracking.client import Client

    return Client(store=_store_spec(args))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


# -- runs ------------------------------------------------------------------------------------
def _runs_list(args) -> int:
    client = _client(args)
    runs = client.find_runs(project=args.project, experiment=args.experiment, name=args.name,
                            tag=args.tag)
    if args.json:
        _print_json([{"id": r.id, "name": r.name} for r in runs])
        return 0
    if not runs:
        print(f"no runs in {client.store.location}")
    for run in runs:
        print(f"{run.id}  {run.name}")
    return 0


def _runs_show(args) -> int:
    run = _client(args).get_experiment_run(id=args.run_id)
    if not args.json:
        print(repr(run))
        return 0
    store = run._store
    artifacts = store.list_artifacts("run", run.id)
    _print_json({"id": run.id, "name": run.name,
                 **{f: store.get_fields("run", run.id, f) for f in
                    ("hyperparameters", "metrics", "attributes")},
                 "tags": run.get_tags(),
                 "artifacts": [{"key": a.key, "type": a.type, "size": a.size, "digest": a.digest}
                               for a in artifacts]})
    return 0


# -- model -----------------------------------------------------------------------------------
def _owner(args):
    client = _client(args)
    if args.registered_model:
        if args.run_id or not args.version:
            raise _usage("give --registered-model NAME with --version V, and no run id")
        return client.get_registered_model(args.registered_model).get_version(args.version)
    if not args.run_id:
        raise _usage("give a run id, or --registered-model NAME --version V")
    return client.get_experiment_run(id=args.run_id)


def _usage(message: str) -> VertaError:
    return VertaError(message)


def _model_manifest(args) -> int:
    from .package.format import read_manifest

    _print_json(read_manifest(_owner(args).model_package_dir()))
    return 0


def _model_source(args) -> int:
    sys.stdout.write((_owner(args).model_package_dir() / "model.py").read_text())
    return 0


def _model_download(args) -> int:
    path = _owner(args).download_model(args.dest)
    print(Path(path).resolve())
    return 0


def _model_export_mlflow(args) -> int:
    path = _owner(args).export_mlflow(args.dest)
    print(Path(path).resolve())
    return 0


def _model_verify(args) -> int:
    from .catalog import problem
    from .errors import ValidationError
    from .package.format import MISSING, read_manifest
    from .validation.validate import _same_output, clean_env_problem
    from .worker.envproof import prove_in_clean_env
    from .worker.rebuild import rebuild_in_subprocess

    if args.python and not args.env:
        raise _usage("--python picks the interpreter of the clean environment: add --env")
    owner = _owner(args)
    package = owner.model_package_dir()
    manifest = read_manifest(package)
    sample = _example(package / "input_example.json")
    artifacts = owner.fetch_artifacts(manifest.get("artifact_keys", []))
    name = manifest["class_name"]
    if args.env:
        proof = prove_in_clean_env(package, artifacts=artifacts, sample_input=sample,
                                   python=args.python, timeout=args.timeout)
        if not proof.ok:
            raise ValidationError(problems=[clean_env_problem(name, proof)])
        result, where = proof.rebuild, _env_label(proof)
    else:
        result = rebuild_in_subprocess(package, artifacts=artifacts, sample_input=sample,
                                       timeout=args.timeout)
        if not result.ok:
            raise ValidationError(problems=[problem(
                "VJ501", f"{name} failed in a fresh process: {result.error}", name=name)])
        where = "a fresh process"
    expected = _example(package / "output_example.json")
    if sample is not MISSING and expected is not MISSING and not _same_output(expected, result.output):
        raise ValidationError(problems=[problem(
            "VJ502", f"{name}.predict gave {json.dumps(result.output)[:200]} in {where} but "
            f"{json.dumps(expected)[:200]} when it was logged", name=name)])
    checked = ("its sample output matches the logged one" if expected is not MISSING
               else "predict answered the sample" if sample is not MISSING
               else "no sample: import and construction only")
    print(f"{name}: ok in {where}; {checked}")
    return 0


def _example(path: Path) -> Any:
    from .package.format import MISSING

    return json.loads(path.read_text()) if path.is_file() else MISSING


def _env_label(proof) -> str:
    env = proof.environment
    if env is None:
        return "a clean environment"
    how = "cached" if env.reused else f"built in {env.build_seconds:.1f} s"
    return (f"a clean environment ({env.installer}, Python {proof.rebuild.python if proof.rebuild else '?'}, "
            f"{len(env.requirements)} requirements, {how}: {env.path})")


# -- store -----------------------------------------------------------------------------------
def _store_check(args) -> int:
    import os

    from .tracking.client import DEFAULT_STORE

    spec = args.store or os.environ.get("VERTA_JUPYTER_STORE") or DEFAULT_STORE
    if spec.startswith(("http://", "https://")):
        return _report_check(*_check_remote(spec, args.quick))
    from .tracking.stores.local.store import DB_NAME, MARKER, LocalStore

    root = Path(spec).expanduser().resolve()
    if not any((root / name).exists() for name in (MARKER, DB_NAME, "blobs")):
        raise VertaError(f"no verta_jupyter store at {root}; pass --store PATH "
                         "(or set VERTA_JUPYTER_STORE)")

    try:  # the folder is checked as files, never opened as a store: damage is reported
        result = LocalStore.check_path(root, verify_blobs=not args.quick)
    except OSError as exc:  # e.g. a folder we may not read
        raise VertaError(f"cannot check the store {root}: {exc}; check the folder's "
                         "permissions") from exc
    return _report_check(str(root), result)


def _check_remote(spec: str, quick: bool):
    from .tracking.client import open_store

    store = open_store(spec)
    try:
        quick = quick and "verify_blobs" in inspect.signature(store.check).parameters
        return store.location, store.check(verify_blobs=False) if quick else store.check()
    finally:
        store.close()


def _report_check(location: str, result) -> int:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()))
    print(f"store {location}: {counts or 'empty'}")
    for note in result.notes:
        print(f"note: {note}")
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    print("ok" if result.ok else f"{len(result.problems)} problem(s) found; the store is "
          "damaged: restore it from a backup (`store gc` refuses to run until it is ok)")
    return 0 if result.ok else 1


def _store_gc(args) -> int:
    from .tracking.client import open_store

    store = open_store(_store_spec(args))
    try:
        removed = store.collect_garbage(min_age=args.min_age)  # refuses (StoreError) if damaged
    finally:
        store.close()
    print(f"removed {removed['temp_files']} temporary file(s) and {removed['blobs']} "
          f"unreferenced blob(s), {removed['bytes']} bytes")
    return 0


def _env_cache(args) -> Path:
    from .worker.envproof import env_cache_root

    return Path(args.cache).expanduser() if args.cache else env_cache_root()


def _envs_list(args) -> int:
    import time

    from .worker.envcache import list_environments

    root = _env_cache(args)
    envs = list_environments(root)
    print(f"{len(envs)} environment(s) in {root}")
    for env in envs:
        state = " (in use)" if env.in_use else "" if env.whole else " (damaged: rebuilt on use)"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(env.last_used))
        print(f"{env.key}  last used {used}{state}  {', '.join(env.requirements) or '(nothing)'}")
    return 0


def _envs_prune(args) -> int:
    from .worker.envcache import prune_environments

    keep, days = (0, 0.0) if args.all else (args.keep, args.days)
    removed = prune_environments(_env_cache(args), keep=keep, days=days)
    print(f"removed {len(removed)} environment(s){': ' if removed else ''}"
          + ", ".join(env.key for env in removed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
