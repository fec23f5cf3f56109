"""Predict through the isolated worker vs a bare in-process call, and the JSON conversion.

    python -m bench.bench_worker          # quick
    python -m bench.bench_worker --full   # more repeats

Rows: the worker's round-trip overhead for a small input (target: median < 2 ms over a bare
`model.predict` call), the in-process predictor's overhead, a 10,000-row DataFrame input
(rows/s), 1 / 1,000 / 100,000 records echoed through the worker against a bare JSON encode +
decode of the same payload, and `to_json_compatible` and `jsonify.dumps` (with and without
orjson) of a 100,000 x 10 DataFrame against `DataFrame.to_json(orient="records")`. Env `VJ_BENCH_SMOKE=1` shrinks every size (for the
runner's own smoke test; the numbers are then not meaningful).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from bench.common import module_main, measure, row

SMOKE = os.environ.get("VJ_BENCH_SMOKE") == "1"

MODELS = '''
from __future__ import annotations
import pandas as pd

class Echo:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return data

class Small:
    def __init__(self, artifacts):
        self.k = 2

    def predict(self, data):
        return {"y": data["x"] * self.k}

class Table:
    def __init__(self, artifacts):
        pass

    def predict(self, data: pd.DataFrame):
        return {"rows": len(data), "mean_a": float(data["a"].mean())}
'''


def _packages(root: Path) -> dict[str, Path]:
    """Capture the three models from a real IPython shell, as a notebook user would."""
    from IPython.core.interactiveshell import InteractiveShell

    from verta_jupyter.capture import capture_model

    shell = InteractiveShell.instance()
    shell.run_cell(textwrap.dedent(MODELS)).raise_error()
    return {name: capture_model(shell.user_ns[name], shell.user_ns).save(root / name)
            for name in ("Echo", "Small", "Table")}


def _records(n: int) -> list[dict]:
    return [{"a": i, "b": i * 0.5, "c": f"row{i}", "d": i % 2 == 0, "e": None} for i in range(n)]


def _small_rows(packages: dict, repeat: int) -> list[dict]:
    from verta_jupyter.package.load import load_package
    from verta_jupyter.worker.client import InProcessPredictor, WorkerClient

    model = load_package(packages["Small"])(artifacts={})
    data = {"x": 21}
    bare = measure(lambda: model.predict(data), repeat=repeat, warmup=20)
    rows = []
    with WorkerClient(packages["Small"]) as worker:
        worker.start()
        through = measure(lambda: worker.predict(data), repeat=repeat, warmup=20)
        load = worker.load_seconds
    overhead_ms = (through.median - bare.median) * 1000
    bare_note = f"bare model.predict in this process: median {bare.in_unit('us'):.2f} us"
    rows.append(row("worker round trip overhead, small input", overhead_ms, "ms", target="< 2 ms",
                    spread=f"worker call {through.spread('ms')}",
                    note="median(worker.predict) - median(bare predict): JSON encode, pipe, "
                         f"decode, convert, both ways; {bare_note}"))
    local = InProcessPredictor(packages["Small"])
    local.start()
    in_process = measure(lambda: local.predict(data), repeat=repeat, warmup=20)
    rows.append(row("in-process predictor overhead, small input",
                    (in_process.median - bare.median) * 1000, "ms",
                    spread=in_process.spread("ms"),
                    note=f"the same JSON round trip without the process boundary; {bare_note}"))
    rows.append(row("worker start (spawn + rebuild + construct)", load, "s",
                    note="one sample: python -I, import verta_jupyter, verify digests, run model.py, "
                         "construct (this model needs no pandas)"))
    return rows


def _table_rows(packages: dict, repeat: int) -> list[dict]:
    import pandas as pd

    from verta_jupyter.package.load import load_package
    from verta_jupyter.worker.client import InProcessPredictor, WorkerClient

    records = _records(10_000)
    model = load_package(packages["Table"])(artifacts={})
    bare = measure(lambda: model.predict(pd.DataFrame(records)), repeat=repeat)
    local = InProcessPredictor(packages["Table"])
    local.start()
    in_process = measure(lambda: local.predict(records), repeat=repeat)
    with WorkerClient(packages["Table"]) as worker:
        worker.start()
        through = measure(lambda: worker.predict(records), repeat=repeat)
    rows_per_s = 10_000 / through.median
    return [row("10,000-row DataFrame input through the worker", through.in_unit("ms"), "ms",
                baseline=in_process.in_unit("ms"), spread=through.spread("ms"),
                baseline_name="InProcessPredictor (same JSON path, no process boundary)",
                note=f"{rows_per_s:,.0f} rows/s: records -> JSON -> pipe -> DataFrame "
                     f"(annotation) -> predict -> JSON; bare pd.DataFrame(records) + predict "
                     f"{bare.in_unit('ms'):.1f} ms")]


def _echo_rows(packages: dict, sizes: list[int], repeat: int) -> list[dict]:
    from verta_jupyter.worker.client import WorkerClient

    rows = []
    with WorkerClient(packages["Echo"]) as worker:
        worker.start()
        for n in sizes:
            records = _records(n)
            reps = repeat if n <= 1000 else max(3, repeat // 10)
            bare = measure(lambda: json.loads(json.dumps(json.loads(json.dumps(records)))),
                           repeat=reps, warmup=1)
            through = measure(lambda: worker.predict(records), repeat=reps, warmup=1)
            rows.append(row(f"{n:,} records echoed through the worker", through.in_unit("ms"),
                            "ms", baseline=bare.in_unit("ms"), spread=through.spread("ms"),
                            baseline_name="json dumps+loads twice in process",
                            note="5 fields per record, request and reply both carry them"))
    return rows


def _conversion_rows(repeat: int, n: int) -> list[dict]:
    import numpy as np
    import pandas as pd

    from verta_jupyter.jsonify import output
    from verta_jupyter.jsonify.output import dumps, to_json_compatible

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((n, 10)), columns=[f"c{i}" for i in range(10)])
    frame["c3"] = (frame["c3"] * 1000).astype(int)
    frame.loc[::7, "c1"] = np.nan
    frame["c9"] = np.where(frame["c9"] > 0.5, "yes", "no")
    pandas_json = measure(lambda: frame.to_json(orient="records"), repeat=repeat)
    ours = measure(lambda: to_json_compatible(frame), repeat=repeat)
    note = "8 float columns (1 with NaN), 1 int, 1 string"
    rows = [row(f"to_json_compatible, DataFrame {n:,} x 10", ours.in_unit("ms"), "ms",
                baseline=pandas_json.in_unit("ms"), target="ratio <= 3", spread=ours.spread("ms"),
                baseline_name='DataFrame.to_json(orient="records")',
                note=note + "; ours builds Python records, pandas writes a string")]
    exact = "pandas rounds floats to 10 significant digits by default, ours are exact"
    if output._orjson is None:
        rows.append(row(f"jsonify.dumps with orjson, DataFrame {n:,} x 10", None, "ms",
                        target="ratio <= 1.5", note="orjson is not installed: pip install "
                        "'verta-jupyter[fast]'"))
    else:
        fast = measure(lambda: dumps(frame), repeat=repeat)
        rows.append(row(f"jsonify.dumps with orjson, DataFrame {n:,} x 10", fast.in_unit("ms"), "ms",
                        baseline=pandas_json.in_unit("ms"), target="ratio <= 1.5",
                        spread=fast.spread("ms"), baseline_name='DataFrame.to_json(orient="records")',
                        note="records + orjson (verta-jupyter[fast]), no GC pauses while the "
                             f"records are built; {exact}"))
    saved, output._orjson = output._orjson, None  # the same call as without the [fast] extra
    try:
        text = measure(lambda: dumps(frame), repeat=max(3, repeat // 2))
    finally:
        output._orjson = saved
    rows.append(row(f"jsonify.dumps without orjson, DataFrame {n:,} x 10", text.in_unit("ms"), "ms",
                    baseline=pandas_json.in_unit("ms"), spread=text.spread("ms"),
                    baseline_name='DataFrame.to_json(orient="records")',
                    note="records + json.dumps(allow_nan=False); json.dumps of the Python floats "
                         f"dominates; {exact}"))
    return rows


def run(quick: bool = True) -> list[dict]:
    """All rows (see bench/__init__.py for the row format)."""
    repeat = 20 if SMOKE else 200 if quick else 1000
    sizes = [1, 100, 1_000] if SMOKE else [1, 1_000, 100_000]
    with tempfile.TemporaryDirectory(prefix="vj-bench-worker-") as tmp:
        packages = _packages(Path(tmp))
        rows = _small_rows(packages, repeat)
        rows += _table_rows(packages, 3 if SMOKE else 7 if quick else 21)
        rows += _echo_rows(packages, sizes, 5 if SMOKE else 50 if quick else 200)
    rows += _conversion_rows(3 if SMOKE else 5 if quick else 11, 1_000 if SMOKE else 100_000)
    return rows


def main(argv: list[str] | None = None) -> int:
    return module_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
