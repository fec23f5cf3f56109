"""The `Predictor` protocol: what the panel needs from whatever runs the model.

Three implementations: `worker.client.WorkerClient` (the model in its own process, the default),
`worker.client.InProcessPredictor` (in this kernel) and `EndpointPredictor` (a deployed model).
The panel calls only what the protocol declares, so a new way to run a model is one class.
"""
from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Predictor(Protocol):
    """Runs a model on JSON-compatible data and reports how long it took and where it ran."""

    #: True when nothing the model does (crash, hang, memory) can hurt this kernel.
    isolated: bool
    #: Where the model runs, for people: "isolated worker", "in this kernel", "endpoint URL".
    where: str
    #: Seconds the last start took (None before a start or when unknown).
    load_seconds: float | None
    #: Seconds of the last call's round trip, and of the time inside `predict` (None if unknown).
    last_seconds: float | None
    last_model_seconds: float | None

    def predict(self, data: Any) -> Any:
        """`data` (JSON-compatible) -> the model's output as JSON-compatible values; raises
        PredictError (or JsonConversionError) with an `ErrorKind`."""

    def close(self) -> None:
        """Release the process or connection; a later `predict` may start again."""


class EndpointPredictor:
    """A deployed model as a `Predictor`: the same JSON, sent to an `Endpoint` (or anything with
    `predict(data)`)."""

    isolated = True  # the model runs elsewhere: nothing it does can hurt this kernel
    load_seconds = None
    last_model_seconds = None

    def __init__(self, endpoint: Any):
        self.endpoint = endpoint
        self.where = f"endpoint {getattr(endpoint, 'url', endpoint)!s}"
        self.last_seconds: float | None = None

    def predict(self, data: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.endpoint.predict(data)
        finally:
            self.last_seconds = time.perf_counter() - started

    def close(self) -> None:
        close = getattr(self.endpoint, "close", None)  # any object with predict() may serve
        if close is not None:
            close()
