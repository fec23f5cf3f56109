"""The predict panel targeting a deployed model: `PredictPanel(run_or_package, endpoint=Endpoint(url))`
sends the same JSON to a real HTTP server on 127.0.0.1 instead of a local worker."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verta_jupyter import Endpoint, PredictPanel

MODEL = '''
class Shout:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"text": data["text"].upper()}
'''


class _Deployment(BaseHTTPRequestHandler):
    """A Verta-style prediction URL: POST JSON, answer JSON; `{"text": "boom"}` is a 500."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((body, self.headers.get("Access-Token")))
        if body.get("text") == "boom":
            status, answer = 500, {"message": "model crashed on boom"}
        else:
            status, answer = 200, {"text": body["text"].upper(), "served": True}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def deployment():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deployment)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def panel(make_package, deployment):
    package = make_package(MODEL, "Shout", sample={"text": "hi"})
    url = f"http://127.0.0.1:{deployment.server_address[1]}/predict/shout"
    panel = PredictPanel(package, endpoint=Endpoint(url, token="t0ken"))
    yield panel
    panel.close()


def test_predict_goes_to_the_endpoint_with_the_logged_example(panel, deployment):
    assert json.loads(panel.input.value) == {"text": "hi"}
    panel.predict_button.click()
    assert panel.error.value == ""
    assert "&quot;served&quot;: true" in panel.result.value
    assert deployment.seen == [({"text": "hi"}, "t0ken")]
    assert "endpoint http://127.0.0.1" in panel.status.value
    assert "/predict/shout" in panel.model_info.value and "Shout" in panel.model_info.value
    assert json.loads(panel.predict_json('{"text": "ok"}')) == {"text": "OK", "served": True}


def test_an_endpoint_error_is_shown_and_the_panel_keeps_working(panel):
    panel.input.value = '{"text": "boom"}'
    panel.predict_button.click()
    assert "500" in panel.error.value and "model crashed on boom" in panel.error.value
    assert not panel.predict_button.disabled
    panel.input.value = '{"text": "again"}'
    panel.predict_button.click()
    assert panel.error.value == "" and "AGAIN" in panel.result.value
