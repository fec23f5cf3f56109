"""`Endpoint`: send JSON to a deployed model and get its answer, MLflow's or Verta's way.

    Endpoint("http://host:5001/invocations").predict({"text": "hi"})          # mlflow models serve
    Endpoint("https://app.verta.ai/api/v1/predict/abc", token="...").predict(x)  # Verta

MLflow's scoring protocol: POST `{"inputs": x}` to `/invocations`, answer `{"predictions": y}`.
Verta's: POST `x` itself with an `Access-Token` header, answer `y`. The protocol follows from
the URL (a path ending in `/invocations` is MLflow's) unless `protocol=` says otherwise.

Retries only where a retry cannot run the model twice: the connection was never made, or the
server said 429/503 (it did not take the request). A read timeout is not retried: the model
may be running. Errors carry the HTTP status and the server's own message; the token never
appears in a repr or an error.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.parse
from typing import Any

from .._urls import check_http_url
from ..errors import PredictError

_RETRY_STATUSES = frozenset({429, 503})


class EndpointError(PredictError):
    """The endpoint refused or failed a prediction; `status` is the HTTP status (or None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Endpoint:
    """A deployed model at `url`. `token` is Verta's access token (sent as `Access-Token`),
    or for MLflow-protocol servers a bearer token; `user:password@` in the URL is sent as
    basic auth and kept out of `url`, messages and the repr. `timeout` is (connect, read)
    seconds. The URL is checked here, before any request (EndpointError if it cannot work)."""

    def __init__(self, url: str, token: str | None = None, *, protocol: str | None = None,
                 timeout: float | tuple[float, float] = (5.0, 60.0), attempts: int = 3,
                 backoff: float = 0.25):
        if protocol not in (None, "mlflow", "verta"):
            raise ValueError(f"protocol {protocol!r} is unknown; use 'mlflow' or 'verta'")
        parts, self._basic = check_http_url(url, "endpoint URL", EndpointError,
                                            "Use the model server's scoring address")
        self.url = urllib.parse.urlunsplit(parts)
        self.protocol = protocol or ("mlflow" if parts.path.rstrip("/").endswith("/invocations")
                                     else "verta")
        self.timeout = timeout if isinstance(timeout, tuple) else (min(timeout, 5.0), timeout)
        self.attempts, self.backoff = max(1, attempts), backoff
        self._token = token
        self._session = None

    def __repr__(self) -> str:
        auth = ", token=***" if self._token else ", auth=basic" if self._basic else ""
        return f"Endpoint({self.url!r}, protocol={self.protocol!r}{auth})"

    def __reduce__(self):
        raise TypeError(f"{self!r} holds a credential and a network session and cannot be "
                        "pickled; create it inside the model from an environment variable.")

    def predict(self, x: Any) -> Any:
        """Send `to_json_compatible(x)`; return the model's JSON answer."""
        from ..jsonify.output import dumps

        payload = {"inputs": x} if self.protocol == "mlflow" else x
        try:
            body = dumps(payload).encode()
        except Exception as exc:
            raise EndpointError(f"the input for {self.url} has no JSON form: {exc}") from exc
        answer = self._post(body)
        if self.protocol == "mlflow":
            if not isinstance(answer, dict) or "predictions" not in answer:
                raise EndpointError(f"{self.url} answered without 'predictions' "
                                    f"({_short(json.dumps(answer))}); is it an MLflow scoring server?")
            return answer["predictions"]
        return answer

    __call__ = predict

    def predict_json(self, text: str) -> str:
        """JSON text in, JSON text out (what a predict panel sends and shows)."""
        from ..jsonify.output import dumps

        return dumps(self.predict(json.loads(text)))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- transport ------------------------------------------------------------------------------
    def _post(self, body: bytes) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
            self._session.auth = self._basic  # from the URL's userinfo, if any
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = self._session.post(self.url, data=body, headers=self._headers(),
                                              timeout=self.timeout)
            except requests.ConnectTimeout:
                if last:
                    raise self._unreachable(f"could not connect within {self.timeout[0]:g}s") from None
            except requests.ReadTimeout:
                raise EndpointError(
                    f"{self.url} did not answer within {self.timeout[1]:g}s (timeout); the model "
                    "may be slow or stuck. Raise `timeout=` or check the server.") from None
            except requests.ConnectionError as exc:
                if last or _maybe_sent(exc):
                    raise self._unreachable(_reason(exc)) from None
            else:
                if response.status_code not in _RETRY_STATUSES or last:
                    return self._answer(response)
            time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            if self.protocol == "verta":
                headers["Access-Token"] = self._token
            else:
                headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _answer(self, response) -> Any:
        if response.status_code == 200:
            try:
                return response.json()
            except (ValueError, RecursionError):  # not JSON, or nested past any real answer
                raise EndpointError(f"{self.url} answered 200 with a body that is not JSON: "
                                    f"{self._scrub(_short(response.text))}", 200) from None
        message = self._scrub(_server_message(response))
        remedy = {401: "Check the token (Verta: the endpoint's access token).",
                  403: "Check the token and that it may call this endpoint.",
                  404: "Check the URL (MLflow: it ends in /invocations).",
                  400: "Check the input format the model expects.",
                  422: "Check the input format the model expects."}.get(
            response.status_code, "Check the server's log." if response.status_code >= 500
            else "See the server's message.")
        raise EndpointError(f"{self.url} answered HTTP {response.status_code}: {message}. {remedy}",
                            response.status_code)

    def _unreachable(self, reason: str) -> EndpointError:
        return EndpointError(f"could not reach {self.url}: {self._scrub(reason)}. Check the URL "
                             "and that the server is running.")

    def _scrub(self, text: str) -> str:
        basic = self._basic and base64.b64encode(":".join(self._basic).encode()).decode()
        for secret in (self._token, basic, self._basic and self._basic[1]):
            if secret:
                text = text.replace(secret, "***")
        return text


def _server_message(response) -> str:
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return _short(" ".join(response.text.split())) or response.reason or "no message"
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if data.get(key):
                code = data.get("error_code")
                return f"{code}: {data[key]}" if code else str(data[key])
    return _short(json.dumps(data))


def _maybe_sent(exc: BaseException) -> bool:
    """True unless the error proves the request never reached the server (refused, DNS)."""
    text = repr(exc).lower()
    return not any(s in text for s in ("refused", "name or service", "nodename", "newconnectionerror",
                                       "failed to establish"))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
