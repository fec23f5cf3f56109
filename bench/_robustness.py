"""Capture robustness: the share of the capture scenario table that rebuilds in a fresh process.

Each scenario of tests/test_capture_scenarios.py runs in a real IPython shell; the class is then
rebuilt and asked to predict the scenario's sample in a fresh `python -I` process, four ways:
verta_jupyter (capture_model + save + rebuild_in_subprocess), cloudpickle alone (dumps in the
shell, loads in the fresh process), dill alone (`dill.dumps(cls, recurse=True)`, loaded with
dill), and the class's source alone from `inspect.getsource` or `dill.source.getsource` (dill
when installed). Ours counts only when the fresh process predicts the same AND the fingerprint
proof agrees. Used by bench_capture.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import ROOT, row


def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.reset(new_session=False)
    ip.compile.flags &= ~__import__("__future__").annotations.compiler_flag  # reset() keeps it
    return ip


def run_cell(ip, code: str) -> None:
    ip.run_cell(code, store_history=True).raise_error()


_BASELINE_CHILD = r"""
import json, sys
req = json.loads(sys.stdin.read())
try:
    if req["kind"] == "pickle":
        import cloudpickle
        cls = cloudpickle.loads(open(req["path"], "rb").read())
    elif req["kind"] == "dill":
        import dill
        cls = dill.loads(open(req["path"], "rb").read())
    else:
        ns = {"__name__": "__main__"}
        exec(compile(open(req["path"]).read(), req["path"], "exec"), ns)
        cls = ns[req["class_name"]]
    sys.path.append(req["root"])  # only to convert and compare the way a deployment and the tests do
    from verta_jupyter.jsonify.input import convert_input
    from verta_jupyter.jsonify.output import to_json_compatible
    model = cls(artifacts={})
    out = model.predict(convert_input(model.predict, req["sample"]))
    print(json.dumps({"ok": True, "output": to_json_compatible(out)}))
except BaseException as exc:
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}))
"""


def _scenarios(smoke: bool) -> list:
    spec = importlib.util.spec_from_file_location("_vj_capture_scenarios", ROOT / "tests" / "test_capture_scenarios.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while it is created
    spec.loader.exec_module(module)
    return module.SCENARIOS[:3] if smoke else module.SCENARIOS


def _methods() -> dict:
    import inspect

    methods = {"cloudpickle": None, "inspect.getsource": inspect.getsource}
    try:
        import dill.source

        methods["dill"] = "dill"  # dill.dumps(cls, recurse=True), loaded with dill
        methods["dill.source"] = dill.source.getsource
    except ImportError:
        pass
    return methods


def _local_helpers_text() -> str:
    """The module the capture tests' `local_helpers` fixture writes, read from that fixture."""
    tree = ast.parse((ROOT / "tests" / "test_capture_scenarios.py").read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "write_text"
                and node.args and isinstance(node.args[0], ast.Constant)):
            return node.args[0].value
    return "VERSION = '1.2'\n\ndef normalise(text):\n    return text.strip().lower()\n"


def robustness_rows(tmp: Path, smoke: bool = False) -> list[dict]:
    """Rows scoring ours against each baseline over the capture scenario table."""
    helpers = tmp / "local-helpers"
    helpers.mkdir()
    (helpers / "vj_local_helpers.py").write_text(_local_helpers_text())
    sys.path.insert(0, str(helpers))  # as the capture tests' local_helpers fixture does
    methods = _methods()
    wins = {m: [] for m in ["verta_jupyter", *methods]}
    scenarios, skipped = _scenarios(smoke), []
    try:
        with ThreadPoolExecutor(2) as pool:  # the fresh processes are not timed: use both cores
            for scenario in scenarios:
                try:
                    scores = _score(scenario, tmp / scenario.id, methods, pool)
                except Exception as exc:  # the scenario's own cells failed here: not a capture result
                    skipped.append(f"{scenario.id} ({type(exc).__name__}: {exc})"[:160])
                    continue
                for method, (ok, why) in scores.items():
                    wins[method].append((scenario.id, ok, why))
    finally:
        sys.path.remove(str(helpers))
        sys.modules.pop("vj_local_helpers", None)
    rows = _score_rows(wins, len(scenarios) - len(skipped))
    if skipped:
        for r in rows:
            r["note"] += "; scenarios whose cells failed in the bench shell (not scored): " + "; ".join(skipped)
    return rows


def _score(scenario, folder: Path, methods: dict, pool) -> dict:
    from verta_jupyter import capture_model, to_json_compatible
    from verta_jupyter.capture.fingerprint import differences
    from verta_jupyter.jsonify.input import convert_input
    from verta_jupyter.worker.rebuild import rebuild_in_subprocess

    folder.mkdir()
    ip = shell()
    for cell in scenario.cells:
        run_cell(ip, textwrap.dedent(cell))
    cls = ip.user_ns[scenario.class_name]
    instance = cls(artifacts={})
    expected = to_json_compatible(instance.predict(convert_input(instance.predict, scenario.sample)))
    jobs = {}
    try:
        captured = capture_model(cls, ip.user_ns)
        package = captured.save(folder / "package", sample_input=scenario.sample)

        def ours():  # rebuilt, same output, and the fingerprint proof agrees
            result = rebuild_in_subprocess(package, sample_input=scenario.sample)
            paths = differences(captured.fingerprint, result.fingerprint) if result.ok else []
            if paths:
                return {"ok": False, "error": "fingerprint differs: " + ", ".join(paths[:3])}
            return result
        jobs["verta_jupyter"] = ours
    except Exception as exc:
        jobs["verta_jupyter"] = f"capture: {type(exc).__name__}: {exc}"
    for method, getsource in methods.items():
        jobs[method] = _baseline_job(method, getsource, cls, scenario, folder)
    for cell in scenario.after:
        run_cell(ip, cell)
    futures = {m: pool.submit(job) for m, job in jobs.items() if callable(job)}
    return {m: _outcome(futures[m].result(), expected) if m in futures else (False, jobs[m]) for m in jobs}


def _outcome(result, expected) -> tuple[bool, str]:
    """(rebuilt and predicted the same, why not)."""
    if not isinstance(result, dict):
        result = {"ok": result.ok, "output": result.output, "error": result.error}
    if not result.get("ok"):
        return False, f"fresh process: {result.get('error') or 'no reply'}"
    if result.get("output") != expected:
        return False, "fresh process predicted something else"
    return True, ""


def _baseline_job(method: str, getsource, cls, scenario, folder: Path):
    """A callable that loads `cls` the baseline's way in a fresh `python -I`, or why it cannot dump."""
    import cloudpickle

    kind = "pickle" if getsource is None else "dill" if getsource == "dill" else "source"
    try:
        if kind == "pickle":
            path = folder / "class.pkl"
            path.write_bytes(cloudpickle.dumps(cls))
        elif kind == "dill":
            import dill

            path = folder / "class.dill"
            path.write_bytes(dill.dumps(cls, recurse=True))
        else:
            path = folder / f"{method}.py"
            path.write_text(textwrap.dedent(getsource(cls)))
    except Exception as exc:
        return f"in the notebook: {type(exc).__name__}: {exc}"
    request = json.dumps({"kind": kind, "path": str(path),
                          "class_name": scenario.class_name, "sample": scenario.sample, "root": str(ROOT)})

    def job():
        with tempfile.TemporaryDirectory() as cwd:
            try:
                proc = subprocess.run([sys.executable, "-I", "-c", _BASELINE_CHILD], input=request, cwd=cwd,
                                      capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                return {"ok": False, "error": "hung: no answer within 60 s (killed)"}
        lines = proc.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {"ok": False}
    return job


def _score_rows(wins: dict, total: int) -> list[dict]:
    ours = wins.pop("verta_jupyter")
    score = 100.0 * sum(ok for _, ok, _ in ours) / total
    rows = []
    for method, got in wins.items():
        passed = [sid for sid, ok, _ in got if ok]
        rows.append(row(f"capture robustness, {total} scenarios: ours vs {method}", score, "%",
                        baseline=100.0 * len(passed) / total, target="ratio >= 1",
                        passed=score >= 100.0 * len(passed) / total,  # also when the baseline is 0
                        baseline_name=f"{method} alone",
                        note=f"{method} rebuilt {len(passed)}/{total}{_failures(got)}; ours: "
                             + (_failures(ours).lstrip("; ") or "rebuilt all")))
    if "dill" not in wins:
        rows.append(row("capture robustness: ours vs dill", score, "%",
                        note="not measured: dill is not installed (pip install dill)"))
    return rows


def _failures(got: list) -> str:
    """'; failed: a (why), b (why)' or, when most failed, the passes and the commonest reason."""
    failed = [(sid, why) for sid, ok, why in got if not ok]
    if not failed:
        return ""
    if len(failed) * 2 <= len(got):
        return "; failed: " + ", ".join(f"{sid} ({why[:90]})" for sid, why in failed)
    reasons = [why.split("\n")[0][:110] for _, why in failed]
    common_reason = max(set(reasons), key=reasons.count)
    passed = [sid for sid, ok, _ in got if ok]
    return (f"; {len(failed)} failed, most with: {common_reason}"
            + (f"; rebuilt: {', '.join(passed)}" if passed else ""))
