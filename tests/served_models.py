"""Model sources the worker and panel tests serve (run in a real shell, captured, packaged).

`Faulty` has one fault per request (abort, hang, megabytes on stdout, raise, unconvertible
output, exit); `Table` takes a DataFrame, reads an artifact and returns known types.
"""
from __future__ import annotations

FAULTY = '''
import os, subprocess, sys, time

class Faulty:
    """One model, one fault per request: {"do": ...}."""

    def __init__(self, artifacts):
        self.factor = 2

    def predict(self, data):
        do = data.get("do")
        if do == "abort":
            os.abort()
        if do == "hang":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            with open(data["pidfile"], "w") as f:
                f.write(str(child.pid))
            time.sleep(600)
        if do == "shout":
            for _ in range(data["megabytes"]):
                print("x" * (1 << 20))
        if do == "raise":
            return self._lookup(data)
        if do == "object":
            return {"bad": object()}
        if do == "exit":
            os._exit(3)
        return {"y": data.get("x", 0) * self.factor}

    def _lookup(self, data):
        return data["missing"]
'''

TABLE = '''
from __future__ import annotations
import numpy as np
import pandas as pd

class Table:
    def __init__(self, artifacts):
        with open(artifacts["scale"]) as f:
            self.scale = float(f.read())

    def predict(self, data: pd.DataFrame):
        out = data.assign(total=(data["a"] + data["b"]) * self.scale)
        out["when"] = pd.Timestamp("2024-01-01")
        return out
'''


def dead(pid: int) -> bool:
    """Whether process `pid` is gone (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is dead
    except FileNotFoundError:
        return True
