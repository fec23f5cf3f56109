"""What the predict panel talks to: a package directory, its artifacts, its example, its identity.

`resolve_source` accepts what `PredictPanel` documents (a run, a model version, anything with
`download_model` + `fetch_artifacts`, a package directory, or a live class, captured on the
fly) and returns one `PanelModel`, so the panel never needs to know where the model came from.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from ..jsonify.output import to_json_compatible


class PanelModel:
    """The resolved source: package dir + artifact paths + example text + who it is."""

    def __init__(self, package_dir: Path, artifacts: dict, sample: Any, origin: dict):
        from ..package.format import package_digest, read_manifest

        self.package_dir = Path(package_dir)
        self.artifacts = {str(k): str(v) for k, v in artifacts.items()}
        manifest = read_manifest(self.package_dir)
        self.class_name = manifest["class_name"]
        self.digest = package_digest(manifest)
        self.origin = origin
        example = self.package_dir / "input_example.json"
        if sample is not None:
            self.example_text = json.dumps(to_json_compatible(sample, root="sample_input"),
                                           indent=2, ensure_ascii=False)
        elif example.exists():
            self.example_text = example.read_text()
        else:
            self.example_text = ""

    def info_html(self) -> str:
        """The identity line: class name, where it came from, the package digest."""
        parts = [f"<b class=\"vj-class\">{html.escape(self.class_name)}</b>"]
        parts += [f'<span class="vj-{k}">{html.escape(k)} {html.escape(str(v))}</span>'
                  for k, v in self.origin.items() if v not in (None, "")]
        parts.append(f'<span class="vj-digest" title="{self.digest}">package '
                     f"{self.digest[:12]}</span>")
        return " · ".join(parts)

    def snippets(self, text: str) -> tuple[str, str]:
        """("copy as Python", "copy as curl") for the request `text`."""
        body = text if text.strip() else "null"
        raw_ok = '"""' not in body and not body.endswith(('"', "\\"))
        literal = f'r"""{body}"""' if raw_ok else repr(body)
        python = (f"import json\nfrom verta_jupyter.worker.client import WorkerClient\n\n"
                  f"with WorkerClient({str(self.package_dir)!r}, artifacts={self.artifacts!r}) as model:\n"
                  f"    output = model.predict(json.loads({literal}))\nprint(output)\n")
        url = os.environ.get("VERTA_ENDPOINT_URL", "http://127.0.0.1:8080/predict")
        curl = (f"curl -sS -X POST {url!s} \\\n  -H 'Content-Type: application/json' "
                f"\\\n  --data-binary @- <<'JSON'\n{body}\nJSON\n")
        return python, curl


def resolve_source(source: Any, tmp: Path, artifacts: dict | None, sample: Any,
                   namespace: dict | None) -> PanelModel:
    """`source` -> PanelModel; a class is captured and a remote package downloaded under `tmp`."""
    artifacts = dict(artifacts or {})
    if isinstance(source, (str, os.PathLike)):
        return PanelModel(Path(source), artifacts, sample, {"folder": str(source)})
    if isinstance(source, type):
        from ..capture import capture_model

        target = capture_model(source, namespace).save(tmp / "model")
        return PanelModel(target, artifacts, sample, {"captured from": "the live class"})
    if hasattr(source, "model_package_dir"):
        package_dir = Path(source.model_package_dir())
    elif hasattr(source, "download_model"):
        package_dir = Path(source.download_model(str(tmp / "model")))
    else:
        raise TypeError(f"PredictPanel cannot use a {type(source).__name__}: pass a run, a model "
                        "version, a model package directory, or a model class")
    from ..package.format import read_manifest

    keys = [k for k in read_manifest(package_dir).get("artifact_keys", []) if k not in artifacts]
    if keys and hasattr(source, "fetch_artifacts"):
        artifacts.update(source.fetch_artifacts(keys))
    return PanelModel(package_dir, artifacts, sample, _origin(source))


def _origin(source: Any) -> dict:
    """Who the model belongs to, for the identity line: run name and id, or model and version."""
    if hasattr(source, "registered_model"):
        return {"model": getattr(source.registered_model, "name", None),
                "version": getattr(source, "version", None), "id": getattr(source, "id", None)}
    return {"run": getattr(source, "name", None), "id": getattr(source, "id", None)}
