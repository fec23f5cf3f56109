"""The architecture is checked, not hoped for: layers one-way, no import cycles anywhere
(imports inside functions included), one place that starts a fresh Python process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "verta_jupyter"


def test_the_layer_contracts_in_setup_cfg_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "setup.cfg"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycles_between_any_two_modules():
    graph = grimp.build_graph("verta_jupyter", include_external_packages=False)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def test_one_place_builds_a_fresh_process_command_line_and_environment():
    markers = {'"-I"': "isolated-mode flag", 'startswith("PYTHON")': "environment scrubbing"}
    for marker, what in markers.items():
        where = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if marker in p.read_text())
        assert where == ["worker/process.py"], f"the {what} appears in {where}"


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over the module import graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_both_stores_implement_the_whole_store_protocol():
    """Every method the protocol declares exists on each store and takes the same parameters,
    so the tracking layer never needs to probe a store with getattr."""
    import inspect

    from verta_jupyter.tracking.stores.base import Store
    from verta_jupyter.tracking.stores.local.store import LocalStore
    from verta_jupyter.tracking.stores.mlflow.store import MlflowStore

    declared = {name: inspect.signature(member) for name, member in vars(Store).items()
                if callable(member) and not name.startswith("_")}
    assert {"copy_artifacts", "collect_garbage", "check", "put_artifact"} <= set(declared)
    for store in (LocalStore, MlflowStore):
        for name, signature in declared.items():
            implemented = getattr(store, name, None)
            assert implemented is not None, f"{store.__name__} lacks {name}"
            params = list(inspect.signature(implemented).parameters)
            assert params[:len(signature.parameters)] == list(signature.parameters), \
                f"{store.__name__}.{name}{inspect.signature(implemented)} != {signature}"
