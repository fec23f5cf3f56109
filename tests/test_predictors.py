"""Every way to run a model satisfies the one `Predictor` protocol the panel relies on."""
from __future__ import annotations

import pytest

from verta_jupyter.errors import ErrorKind, PredictError
from verta_jupyter.panel.endpoint import Endpoint
from verta_jupyter.panel.predictors import EndpointPredictor, Predictor
from verta_jupyter.worker.client import InProcessPredictor, WorkerClient

SOURCE = """
class Doubler:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        if data == "boom":
            raise ValueError("no boom here")
        return {"twice": data * 2}
"""


@pytest.fixture
def package(make_package):
    return make_package(SOURCE, "Doubler")


def test_each_predictor_satisfies_the_protocol_and_answers_alike(package):
    predictors = [WorkerClient(package), InProcessPredictor(package)]
    try:
        for predictor in predictors:
            assert isinstance(predictor, Predictor), type(predictor).__name__
            assert predictor.predict(21) == {"twice": 42}
            assert predictor.last_seconds is not None and predictor.where
            with pytest.raises(PredictError, match="no boom here") as caught:
                predictor.predict("boom")
            assert caught.value.kind is ErrorKind.MODEL and "ValueError" in caught.value.reason
    finally:
        for predictor in predictors:
            predictor.close()


def test_an_endpoint_is_a_predictor_too():
    endpoint = EndpointPredictor(Endpoint("http://127.0.0.1:9/invocations"))
    assert isinstance(endpoint, Predictor)
    assert endpoint.isolated and endpoint.where == "endpoint http://127.0.0.1:9/invocations"
