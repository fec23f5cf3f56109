"""HTTP layer for the MLflow store: one `requests.Session`, timeouts, retries, errors, auth.

Nothing here knows about runs or models; `store.py` maps our store protocol onto these calls.
We speak MLflow's REST API directly so the `mlflow` package (~850 MB) is never needed at run time.

Rules this module enforces for every call:
- a (connect, read) timeout, always;
- retries with exponential backoff on connection errors and 5xx, but only when the caller says
  the call is safe to repeat (`retry=True`); creates that are not idempotent are made safe by
  the store (get-or-create, client-generated ids) and call with `retry=False`;
- MLflow's `{"error_code", "message"}` becomes a `StoreError` leaf naming the URL, the server's
  message and one remedy;
- credentials (basic or bearer, from the environment or the URL) never appear in a repr, a log
  line or an error message: we scrub them from anything the server echoes back;
- the URL is checked before any request (`check_http_url`), TLS follows MLflow's variables,
  and an answer is read with a size bound and parsed as a JSON object or refused by name.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from ...._urls import check_http_url
from ....errors import AlreadyExistsError, NotFoundError, StoreError

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow/"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for smooth progress
#: The largest JSON answer we read (after decompression): a page of 1000 runs with many params
#: is a few MB; a server that sends more is broken or hostile and must not fill our memory.
MAX_ANSWER = 256 << 20
ERROR_HEAD = 64 << 10  # of an error page, only the start is read (it is shown shortened anyway)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class AuthenticationError(StoreError, PermissionError):
    """The MLflow server rejected our credentials (HTTP 401) or our permissions (403)."""


class TransientError(StoreError, ConnectionError):
    """The server could not be reached or failed (5xx/timeout) after every retry."""


class _Credentials:
    """A `requests` auth hook holding a secret that never shows in repr() or str()."""

    def __init__(self, kind: str, header_value: str, secrets: tuple[str, ...]):
        self.kind = kind
        self._header_value = header_value
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, request):
        request.headers["Authorization"] = self._header_value
        return request

    def scrub(self, text: str) -> str:
        for secret in (*self._secrets, self._header_value):
            if secret:
                text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"<{self.kind} credentials>"

    __str__ = __repr__

    def __reduce__(self):
        # A store referenced by a model must never carry its secret into a pickle.
        raise TypeError("MLflow credentials cannot be pickled; read them from the environment.")


def credentials_from(env: dict[str, str] | os._Environ, userinfo: tuple[str, str] | None = None
                     ) -> _Credentials | None:
    """Basic auth from the URL's userinfo, else MLFLOW_TRACKING_USERNAME + PASSWORD (both, as
    MLflow's client requires), else a bearer MLFLOW_TRACKING_TOKEN."""
    user, password = userinfo or (env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD"))
    if user and (password or userinfo):
        raw = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        return _Credentials("basic", f"Basic {raw}", (password or "", raw))
    token = env.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return _Credentials("bearer", f"Bearer {token}", (token,))
    return None


def split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """`http://user:pw@host:5000/` -> (`http://host:5000`, (user, pw)); no userinfo kept in the URL.

    Refused up front (`check_http_url`), with the URL shown without its password."""
    parts, userinfo = check_http_url(url, "store URL", StoreError,
                                     "Use the MLflow tracking server's address")
    return urllib.parse.urlunsplit((*parts[:2], parts[2].rstrip("/"), "", "")), userinfo


def env_flag(env, name: str) -> bool:
    """A boolean environment variable the way MLflow reads it: true/1, false/0, else an error."""
    value = (env.get(name) or "").strip().lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise StoreError(f"environment variable {name}={env.get(name)!r} is not a boolean; set it to "
                     "true or false")


def tls_from(env) -> tuple[bool | str, str | None]:
    """(`verify`, `cert`) for requests, from MLflow's TLS variables, with MLflow's rules:
    MLFLOW_TRACKING_INSECURE_TLS=true skips verification; MLFLOW_TRACKING_SERVER_CERT_PATH is a
    CA bundle (the two cannot be combined); MLFLOW_TRACKING_CLIENT_CERT_PATH a client cert."""
    insecure = env_flag(env, "MLFLOW_TRACKING_INSECURE_TLS")
    server_cert = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    client_cert = env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
    if insecure and server_cert:
        raise StoreError("MLFLOW_TRACKING_INSECURE_TLS=true and MLFLOW_TRACKING_SERVER_CERT_PATH are "
                         "both set, which MLflow also refuses; unset one of them")
    for name, path in (("MLFLOW_TRACKING_SERVER_CERT_PATH", server_cert),
                       ("MLFLOW_TRACKING_CLIENT_CERT_PATH", client_cert)):
        if path and not os.path.exists(path):
            raise StoreError(f"{name}={path!r}: no such file; point it at a PEM file or unset it")
    return (server_cert or not insecure), client_cert


@dataclass
class RetryPolicy:
    """How often and how patiently to retry a call that is safe to repeat."""

    attempts: int = 5
    backoff: float = 0.25  # seconds before the 2nd attempt; doubles each time
    max_backoff: float = 4.0

    def delays(self):
        delay = self.backoff
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_backoff)


class MlflowHttp:
    """A session bound to one MLflow tracking server.

    `timeout` is (connect, read) seconds for every request. Retries follow `retry_policy`.
    """

    def __init__(self, url: str, *, timeout: tuple[float, float] = (5.0, 60.0),
                 retry_policy: RetryPolicy | None = None, env=None):
        import requests

        self.url, userinfo = split_url(url)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        env = os.environ if env is None else env
        verify, cert = tls_from(env)
        self._credentials = credentials_from(env, userinfo)
        self._session = requests.Session()
        self._session.auth = self._credentials
        # Per request, not on the session: requests lets $REQUESTS_CA_BUNDLE override a
        # session's `verify` (psf/requests#3829); MLflow's client also passes them per call.
        self._tls = {"verify": verify, "cert": cert}
        self.max_answer = MAX_ANSWER
        self._session.headers["User-Agent"] = "verta-jupyter"

    def __repr__(self) -> str:
        auth = self._credentials.kind if self._credentials else "none"
        return f"MlflowHttp(url={self.url!r}, auth={auth!r})"

    def __reduce__(self):
        raise TypeError(f"{self!r} holds a network session and cannot be pickled; "
                        "create the client inside the model or pass data as an artifact.")

    def close(self) -> None:
        self._session.close()

    # -- JSON API -------------------------------------------------------------------------------
    def call(self, method: str, endpoint: str, body: dict | None = None, *, retry: bool = True
             ) -> dict[str, Any]:
        """Call `/api/2.0/mlflow/<endpoint>`; GET sends `body` as query parameters."""
        url = self.url + API + endpoint
        kwargs = {"params": body} if method == "GET" else {"json": body or {}}
        response = self.request(method, url, retry=retry, what=f"{method} {endpoint}", **kwargs)
        return self.json_object(response, f"{method} {endpoint}")

    def json_object(self, response, what: str) -> dict[str, Any]:
        """The answer as a JSON object, or a StoreError saying what came instead (an HTML login
        page from a proxy, a truncated body, a list, more than `max_answer` bytes): never a
        raw JSONDecodeError or a memory blow-up."""
        content = self.read_answer(response, what)
        if not content:
            return {}
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
            raise self.malformed(what, f"a JSON object, got {kind}: "
                                       f"{_snippet(content)}") from None
        if not isinstance(data, dict):
            raise self.malformed(what, f"a JSON object, got a JSON {type(data).__name__}")
        return data

    def read_answer(self, response, what: str) -> bytes:
        """The whole body of a (streamed) answer, refused past `max_answer` bytes."""
        import requests

        data = bytearray()
        with response:
            try:
                for chunk in response.iter_content(CHUNK):
                    data += chunk
                    if len(data) > self.max_answer:
                        raise self.malformed(what, f"an answer of at most {self.max_answer:,} "
                                                   "bytes (it sent more)")
            except (requests.RequestException, OSError) as exc:  # cut off mid-body
                raise self._transient(what, self.url, exc, 1) from None
        return bytes(data)

    def malformed(self, what: str, expected: str) -> StoreError:
        """The error for an answer that is not what MLflow's REST API sends."""
        return StoreError(self.scrub(
            f"MLflow server {self.url} ({what}) sent an answer we cannot use: expected {expected}. "
            "Check that the URL points at an MLflow tracking server (not a proxy or login page) "
            "and that its version speaks MLflow's REST API 2.0."))

    def request(self, method: str, url: str, *, retry: bool, what: str, ok=(200,),
                body_factory: Callable[[], Any] | None = None, **kwargs):
        """Send one request with timeouts and (if `retry`) backoff; return the response or raise.

        `body_factory` makes a fresh request body for each attempt (a file stream cannot be
        re-read after a failed attempt).
        """
        import requests

        delays = self.retry_policy.delays() if retry else iter(())
        kwargs.setdefault("stream", True)  # bodies are read by us, with a bound (read_answer)
        attempt = 0
        while True:
            attempt += 1
            try:
                if body_factory is not None:
                    kwargs["data"] = body_factory()
                response = self._session.request(method, url, timeout=self.timeout, **self._tls,
                                                 **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure, response = exc, None
            finally:
                _close(kwargs.get("data"))
            if response is not None and response.status_code not in RETRY_STATUSES:
                if response.status_code in ok:
                    return response
                raise self.error(response, what)
            delay = next(delays, None)
            if delay is None:
                cause = failure if response is None else self.error(response, what)
                raise self._transient(what, url, cause, attempt)
            log.info("%s: retrying in %.2fs (%s)", what, delay,
                     self._describe(failure) if response is None else f"HTTP {response.status_code}")
            if response is not None:
                response.close()
            time.sleep(delay)

    # -- artifacts (the server's proxied `mlflow-artifacts` endpoints) ---------------------------
    def artifact_url(self, remote: str) -> str:
        return f"{self.url}{ARTIFACTS_API}/{urllib.parse.quote(remote.strip('/'))}"

    def upload(self, local_path: str | os.PathLike, remote: str, *, progress: Progress | None = None
               ) -> tuple[str, int]:
        """Stream a file to `remote` (`<exp>/<run>/artifacts/<path>`); PUT is safe to repeat.
        Returns ("sha256:<hex>", size) of the bytes sent, hashed on the way (one read)."""
        total = os.path.getsize(local_path)
        readers: list[_ProgressReader] = []

        def body():
            readers.append(_ProgressReader(local_path, total, progress))
            return readers[-1]

        self.request("PUT", self.artifact_url(remote), retry=True, what=f"upload {remote}",
                     body_factory=body, headers={"Content-Type": "application/octet-stream"}
                     ).close()
        return "sha256:" + readers[-1].sha256.hexdigest(), readers[-1].done

    def download(self, remote: str, dest: str | os.PathLike, *, progress: Progress | None = None
                 ) -> None:
        """Stream `remote` into `dest` via a temp file + rename: never a half-written `dest`."""
        import requests

        delays = self.retry_policy.delays()
        tmp = f"{dest}.part-{os.getpid()}"
        while True:
            try:
                response = self.request("GET", self.artifact_url(remote), retry=True, stream=True,
                                        what=f"download {remote}")
                with response, open(tmp, "wb") as out:
                    length = response.headers.get("Content-Length") or "0"
                    total, done = (int(length) if length.isdigit() else 0), 0
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                os.replace(tmp, dest)
                return
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._transient(f"download {remote}", remote, exc) from None
                time.sleep(delay)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def list_artifacts(self, remote: str) -> list[dict]:
        """Entries directly under `remote`: dicts with `path` (relative), `is_dir`, `file_size`."""
        what = f"list {remote}"
        response = self.request("GET", self.url + ARTIFACTS_API, retry=True, params={"path": remote},
                                what=what)
        files = self.json_object(response, what).get("files", [])
        if not isinstance(files, list) or not all(
                isinstance(f, dict) and isinstance(f.get("path"), str) for f in files):
            raise self.malformed(what, '"files": a list of {"path": text, "is_dir": bool} entries')
        return files

    # -- errors ---------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """Remove our secrets from text that may echo them (server messages, exception text)."""
        return self._credentials.scrub(text) if self._credentials else text

    def error(self, response, what: str) -> StoreError:
        """Turn an MLflow error response into our error: status, server message, URL, remedy."""
        code, message = _parse_error(response, _head(response, ERROR_HEAD))
        status = response.status_code
        where = f"MLflow server {self.url} ({what})"
        detail = self.scrub(f"HTTP {status}{' ' + code if code else ''}: {message}")
        if status == 401:
            return AuthenticationError(
                f"{where} rejected the credentials: {detail}. Set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to a valid account.")
        if status == 403:
            return AuthenticationError(
                f"{where} refused access: {detail}. Ask the server's admin for permission on this "
                "experiment, or use an account that has it.")
        if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
            return NotFoundError(f"{where}: not found: {detail}. Check the name or id; list what "
                                 "exists with the client's list/find methods.")
        if code == "RESOURCE_ALREADY_EXISTS":
            return AlreadyExistsError(f"{where}: {detail}. Pass overwrite=True or pick another name.")
        remedy = ("The server failed; check its log and retry." if status >= 500 else
                  "Check the value against MLflow's limits (see docs/mlflow.md).")
        return StoreError(f"{where} refused the request: {detail}. {remedy}")

    def _transient(self, what: str, url: str, cause, attempts: int | None = None) -> TransientError:
        attempts = attempts or self.retry_policy.attempts
        reason = cause if isinstance(cause, StoreError) else self._describe(cause)
        return TransientError(
            f"MLflow server {self.url} ({what}) failed after {attempts} attempt(s): {reason}. "
            "Check that the server is running and reachable (e.g. open "
            f"{self.url}/health), then retry; nothing partial was made visible.")

    def _describe(self, exc: BaseException) -> str:
        import requests

        if isinstance(exc, requests.Timeout):
            return f"no answer within {self.timeout[1]:g}s (timeout)"
        if isinstance(exc, requests.ConnectionError):
            return f"connection failed ({self.scrub(_root_cause(exc))})"
        return self.scrub(str(exc))


def _parse_error(response, head: bytes) -> tuple[str, str]:
    try:
        data = json.loads(head)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and ("message" in data or "error_code" in data):
        return str(data.get("error_code") or ""), str(data.get("message") or "").strip()
    text = " ".join(head.decode("utf-8", "replace").split())[:300]
    return "", text or response.reason or "no message"


def _head(response, limit: int) -> bytes:
    """The first `limit` bytes of a streamed body (the rest is never read), then close it."""
    import requests

    data = bytearray()
    try:
        for chunk in response.iter_content(8192):
            data += chunk
            if len(data) >= limit:
                break
    except (requests.RequestException, OSError):  # cut short: what arrived is the message
        pass
    finally:
        response.close()
    return bytes(data[:limit])


def _snippet(content: bytes, limit: int = 120) -> str:
    text = " ".join(content[:limit * 4].decode("utf-8", "replace").split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _root_cause(exc: BaseException) -> str:
    # requests wraps urllib3 wraps OSError; the innermost message is the readable one.
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text = str(seen) or type(seen).__name__
    return text if len(text) < 200 else text[:200] + "..."


class _ProgressReader:
    """A file opened for one upload attempt; reports progress as requests reads it."""

    def __init__(self, path, total: int, progress: Progress | None):
        self._file = open(path, "rb")
        self._total, self.done, self._progress = total, 0, progress
        self.sha256 = hashlib.sha256()

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunked encoding
        return self._total

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(CHUNK if size is None or size < 0 else max(size, CHUNK))
        self.done += len(data)
        self.sha256.update(data)
        if self._progress and data:
            self._progress(self.done, self._total)
        return data

    def close(self) -> None:
        self._file.close()


def _close(body) -> None:
    if hasattr(body, "close"):
        body.close()
