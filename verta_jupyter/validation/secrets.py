"""Secret detection over everything a model package carries (VJ203).

Three places can hold a credential: the captured values (walked whole: containers, object
attributes of every kind, string arrays and frames), the generated model.py (string constants
and comments), and the bundled local modules (`lib/settings.py`). A finding names where it is
(`CONFIG["db"]["auth"]["token"]`, `settings.py line 3`) and never echoes the secret.

Rules: a table of credential formats ported from detect-secrets 1.5.0's plugins and gitleaks'
rule set, compiled into one regular expression, plus name hints (`password`, `api_key`) and an
entropy test. detect-secrets itself was measured and not used: its last release is from May 2024
and has no Databricks rule, its import costs 0.5 s and its 27 plugins about 64 us per string
(6 s for a 100,000-word vocabulary, where this table takes well under one), and its entropy and
keyword plugins expect lines of source rather than values.

The walk is bounded by an explicit budget; a value it could not finish is reported (VJ209), so
nothing passes silently.
"""
from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import tokenize
import types
from collections import Counter, deque
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Iterable, Iterator

from ..catalog import problem
from ..errors import Problem, ValidationError

__all__ = ["secret_problems", "secret_reason", "credential_kind", "secret_name", "name_words",
           "redact", "scan_budget", "SCAN_BUDGET", "BUDGET_VARIABLE"]

SCAN_BUDGET = 2_000_000  # objects visited (a string counts 1 per 4 KiB) across one model's values
BUDGET_VARIABLE = "VERTA_JUPYTER_SECRET_SCAN_BUDGET"  # a different budget, e.g. for huge values

# (what it is, pattern). Sources: detect-secrets plugins (aws, azure_storage_key, github_token,
# gitlab_token, slack, stripe, jwt, private_key, basic_auth, sendgrid, twilio, mailchimp, npm,
# pypi_token, telegram_token, openai) and gitleaks rules (databricks-api-token, huggingface,
# slack-webhook, gcp-api-key, azure SAS). Placeholders (`:***@`, `{password}`) are not secrets.
_RULES = [
    ("a private key", r"-----BEGIN[ A-Z0-9_-]*PRIVATE KEY(?: BLOCK)?-----"),
    ("an AWS access key id", r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("an Azure storage connection string with AccountKey=",
     r"(?i:\b(?:AccountKey|SharedAccessKey)\s*=\s*)[A-Za-z0-9+/]{20,}"),
    ("an Azure shared access signature", r"[?&;]sig=[A-Za-z0-9%+/]{30,}"),
    ("a Databricks token", r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ("a GitLab token", r"\bgl(?:pat|dt|ptt|rt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_-]{20,}"),
    ("a Slack token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    ("a Slack webhook", r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{20,}"),
    ("a Stripe key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("an sk- API key", r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{20,}"),
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}\b"),
    ("an npm token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    ("a PyPI token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ("a SendGrid key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b"),
    ("a Twilio key", r"\bSK[0-9a-fA-F]{32}\b"),
    ("a Mailchimp key", r"\b[0-9a-f]{32}-us\d{1,2}\b"),
    ("a Telegram bot token", r"\b\d{8,10}:AA[0-9A-Za-z_-]{33}\b"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
    ("a URL with a password", r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?![*{$<])[^/\s@]+@"),
    ("a connection string with a password", r"(?i:(?:^|;)\s*(?:password|pwd)\s*=\s*)(?![*{$<])[^;\s]{3,}"),
]
_FORMATS = re.compile("|".join(f"(?P<r{i}>{pattern})" for i, (_, pattern) in enumerate(_RULES)))
# Literal parts, one of which every rule needs: searching for them first is ~30x faster than the
# rules themselves on the ordinary strings (UUIDs, hashes, words) that make up most values.
_TRIGGERS = re.compile(
    "PRIVATE KEY|A3T|AKIA|ASIA|ABIA|ACCA|sig=|dapi|gh[pousr]_|github_pat_|gl[a-z]{1,5}-|xox|"
    r"hooks\.slack|k_live_|k_test_|AIza|sk-|hf_|npm_|pypi-|SG\.|SK|-us|:AA|eyJ|://")
_KEY_VALUE_TRIGGERS = re.compile("(?i:accountkey|sharedaccesskey|password|pwd)")  # all need "="
_SHORTEST_FORMAT = 16  # no rule above matches fewer characters (a name hint still applies)

_STRONG_WORDS = {"password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey",
                 "credential", "credentials", "auth", "bearer"}
_KEY_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
              ("client", "secret"), ("signing", "key"), ("encryption", "key")}
# `# password: hunter2` in a comment: a secret word, then a value with letters and digits
_COMMENT_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key)\b\s*[:=]\s*"
    r"['\"]?(?=[^\s'\"]*\d)(?=[^\s'\"]*[A-Za-z])([A-Za-z0-9_\-+/=!@#$%^&*.~]{6,})")


# -- one string ------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def name_words(name: str) -> tuple[str, ...]:
    """`apiKey`, `API_KEY`, `OpenAIKey` -> lower-case words."""
    return tuple(w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name))


@lru_cache(maxsize=4096)
def secret_name(name: str) -> str | None:
    """'strong' for names that say secret (password, token, ...), 'key' for *key*, else None."""
    words = name_words(name)
    if _STRONG_WORDS.intersection(words) or any(pair in _KEY_PAIRS for pair in zip(words, words[1:])):
        return "strong"
    return "key" if "key" in words or "keys" in words else None


def credential_kind(text: str) -> str | None:
    """What a string looks like if it looks like a credential (never the value itself)."""
    if len(text) >= _SHORTEST_FORMAT and (
            _TRIGGERS.search(text) or ("=" in text and _KEY_VALUE_TRIGGERS.search(text))):
        match = _FORMATS.search(text)
        if match:
            return _RULES[int(match.lastgroup[1:])][0]
    if _high_entropy(text):
        return "a long random-looking string"
    return None


_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_\-.]+")


def _high_entropy(text: str) -> bool:
    # lower-case hex digests, UUIDs and identifiers are not secrets: ask for mixed case first
    if len(text) < 32 or text.islower() or text.isupper() or not _TOKEN_CHARS.fullmatch(text):
        return False
    if not any(c.isdigit() for c in text) or not any(c.isalpha() for c in text):
        return False
    counts = Counter(text)
    entropy = -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())
    return entropy >= 4.0


def secret_reason(name: str | None, value: Any) -> str | None:
    """Why `name = value` looks like a secret, or None."""
    if not isinstance(value, (str, bytes, bytearray)):
        return None
    text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
    strength = secret_name(name) if name else None
    if strength is None and len(text) < _SHORTEST_FORMAT:
        return None  # the common case in a vocabulary: nothing can match
    kind = credential_kind(text)
    if kind:
        return f"holds what looks like {kind} ({redact(text)})"
    plausible = text and not re.search(r"[\s\\]", text) and len(text) >= 4
    if strength == "strong" and plausible:
        return f"is named like a secret and holds a string ({redact(text)})"
    if strength == "key" and plausible and len(text) >= 12 and re.search(r"\d", text) and re.search(r"[A-Za-z]", text):
        return f"is named like a key and holds a credential-like string ({redact(text)})"
    return None


def redact(text: str) -> str:
    """Enough of a secret to recognise it, never enough to use it."""
    return f"'{text[:3]}…', {len(text)} characters"


# -- the whole model -------------------------------------------------------------------------

def secret_problems(captured: Any, namespace: dict, budget: int | None = None) -> list[Problem]:
    """VJ203 for secrets in captured values, model.py and bundled modules; VJ209 when the value
    walk ran out of `budget` (default: $VERTA_JUPYTER_SECRET_SCAN_BUDGET, else SCAN_BUDGET)."""
    found: dict[str, Problem] = {}
    values = {**namespace, **(getattr(captured, "values", None) or {})}
    walk = _Walk(scan_budget() if budget is None else budget)
    flagged_text: set[str] = set()
    for dep in captured.dependencies:
        if dep.kind not in ("literal", "value") or dep.name not in values:
            continue
        users = ", ".join(dep.used_by) or "the model"
        for label, name, text in walk.leaves(dep.name, values[dep.name]):
            reason = secret_reason(name, text)
            if reason and label not in found:
                flagged_text.add(text if isinstance(text, str) else bytes(text).decode("utf-8", "replace"))
                found[label] = problem("VJ203", f"'{label}' (used by {users}) {reason}", name=dep.name,
                                       where=dep.defined_in or None)
    found.update(_pickle_problems(captured, {p.name for p in found.values()}, walk))
    for label, text, line in _source_findings(captured.source):
        if label not in found and text not in flagged_text:
            found[label] = problem("VJ203", f"'{label}' {secret_reason(label, text) or _comment(text)}",
                                   name=label, where=f"model.py line {line}")
    for path, data in sorted((getattr(captured, "bundled", None) or {}).items()):
        found.update(_bundled_problems(path, data, found))
    return list(found.values()) + walk.unfinished()


def scan_budget() -> int:
    """The value walk's budget: $VERTA_JUPYTER_SECRET_SCAN_BUDGET if set, else SCAN_BUDGET."""
    raw = os.environ.get(BUDGET_VARIABLE, "").strip()
    if not raw:
        return SCAN_BUDGET
    try:
        return max(1, int(raw.replace("_", "")))
    except ValueError:
        raise ValidationError(f"{BUDGET_VARIABLE}={raw!r} is not a whole number; unset it or give a "
                              f"number of objects such as {SCAN_BUDGET}") from None


def _pickle_problems(captured: Any, flagged: set[str], walk: _Walk) -> dict[str, Problem]:
    """Credential formats in the pickled bytes of each value (its pickle stream and its
    out-of-band buffers but floating-point ones, read from disk in bounded chunks), a net
    under the value walk: state
    that no attribute shows (a functools.partial's arguments, a custom __reduce__, a numpy
    array of strings) is still in the pickle. Strings sit there verbatim, so the format rules
    apply; names and entropy do not (the bytes around them are binary)."""
    out: dict[str, Problem] = {}
    for name, stored in (getattr(captured, "pickled", None) or {}).items():
        if name in flagged or walk.spend(name, len(stored) // 4096):
            continue
        found = _first_credential(_printable_texts(stored.text_chunks()))
        if found:
            kind = _RULES[int(found.lastgroup[1:])][0]
            out[f"{name} (pickled)"] = problem(
                "VJ203", f"'{name}' holds, somewhere in its pickled state, what looks like {kind} "
                f"({redact(found.group())})", name=name)
    return out


def _first_credential(texts) -> re.Match | None:
    """The first credential format in `texts`, if a trigger word appears in any of them (the
    same rule as over one text: a trigger anywhere, a format anywhere)."""
    triggered, first = False, None
    for text in texts:
        triggered = triggered or bool(_TRIGGERS.search(text) or ("=" in text and _KEY_VALUE_TRIGGERS.search(text)))
        first = first or _FORMATS.search(text)
        if triggered and first:
            return first
    return None


# A credential in a pickle is a run of printable ASCII (strings are stored verbatim). Scanning
# only such runs keeps the rules off the binary bulk of a value: a 200 MB float array holds a
# few thousand short runs, and the rules then read kilobytes instead of 200 MB. The runs are
# found without a regular expression over the bulk (80 MB/s): bytes.translate marks printable
# bytes, bytes.find jumps to the next 8 of them in a row (both at memory speed).
_RUN = 8
_MARK = bytes(0x61 if 0x20 <= b <= 0x7e else 0 for b in range(256))
_MAX_CARRY = 1 << 20  # a longer printable run is cut here (a secret is far shorter)


def _printable_texts(chunks):
    """Per chunk, its printable ASCII runs of 8+ characters, one per line; a run cut by a chunk
    boundary is carried whole into the next chunk."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        marks = data.translate(_MARK)
        end = len(data)
        tail = len(marks) - len(marks.rstrip(b"a"))  # a run reaching the end may go on
        if tail and tail < _MAX_CARRY:
            end -= tail
        carry = data[end:]
        yield "\n".join(run.decode("ascii") for run in _runs(data, marks, end))
    if carry:
        yield "\n".join(run.decode("ascii") for run in _runs(carry, carry.translate(_MARK), len(carry)))


def _runs(data: bytes, marks: bytes, end: int):
    start = marks.find(b"a" * _RUN, 0, end)
    while start != -1:
        stop = marks.find(b"\0", start, end)
        stop = end if stop == -1 else stop
        yield data[start:stop]
        start = marks.find(b"a" * _RUN, stop, end)


def _comment(text: str) -> str:
    return f"is a comment holding what looks like a credential ({redact(text)})"


def _bundled_problems(path: str, data: bytes, found: dict[str, Problem]) -> dict[str, Problem]:
    """Findings in one bundled local module (`lib/settings.py`), labelled `settings.TOKEN`."""
    if not path.endswith(".py"):
        return {}
    module = path[:-3].replace("/", ".").removesuffix(".__init__")
    text = data.decode("utf-8", "replace")
    out: dict[str, Problem] = {}
    for label, value, line in _source_findings(text):
        full = f"{module}.{label}" if label.isidentifier() else f"{label} in {module}"
        key = f"{full} ({path} line {line})"
        if key not in found and key not in out:
            reason = secret_reason(label, value) or _comment(value)
            out[key] = problem("VJ203", f"'{full}' in the bundled local module {path} {reason}",
                               name=full, where=f"{path} line {line}")
    return out


class _Walk:
    """Every string reachable from captured values, with the path to it, within a budget."""

    def __init__(self, budget: int):
        self.left = budget
        self.budget = budget
        # id -> object: holding the object keeps its id from being reused by a later temporary
        # (each DataFrame column is a new Series), which would hide it as "already seen"
        self.seen: dict[int, Any] = {}
        self.stopped: list[str] = []  # values whose walk ran out of budget

    def leaves(self, root: str, value: Any) -> Iterator[tuple[str, str, str | bytes]]:
        """(label, nearest name, text) depth-first. Children are produced lazily from a stack
        of iterators: no recursion (any nesting depth) and no copy of a huge container."""
        stack: list[Iterator[tuple[str, str, Any]]] = [iter([(root, root, value)])]
        while stack:
            try:
                label, name, item = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            except Exception:  # a container that fails while iterated: pickling will tell
                stack.pop()
                continue
            if self.left <= 0:
                self.stopped.append(root)
                return
            if isinstance(item, (str, bytes, bytearray)):
                self.left -= 1 + len(item) // 4096
                yield label, name, item
                continue
            self.left -= 1
            if id(item) in self.seen or _is_leaf(item):
                continue
            self.seen[id(item)] = item
            stack.append(iter(_children(label, name, item)))

    def spend(self, root: str, cost: int) -> bool:
        """Take `cost` from the budget for scanning `root`; True (and noted) when it is spent."""
        if self.left <= cost:
            self.stopped.append(root)
            return True
        self.left -= cost
        return False

    def unfinished(self) -> list[Problem]:
        return [problem("VJ209", f"the secret scan stopped inside '{name}' after {self.budget:,} "
                        f"objects (${BUDGET_VARIABLE}): the rest of it was not checked for secrets",
                        name=name)
                for name in dict.fromkeys(self.stopped)]


_LEAF_TYPES = (int, float, complex, bool, type(None), type, types.ModuleType, types.FunctionType,
               types.BuiltinFunctionType, types.MethodType, types.CodeType, range, memoryview)


def _is_leaf(value: Any) -> bool:
    """Values that hold no strings (numbers) or whose text is source (functions, classes:
    model.py is scanned as source)."""
    return isinstance(value, _LEAF_TYPES)


def _children(label: str, name: str, value: Any) -> Iterable[tuple[str, str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, (str, bytes)):
                yield f"a key of {label}", "", key  # a key can be a credential (by format only)
            yield f"{label}[{_key_text(key)}]", key if isinstance(key, str) else name, item
        return
    if isinstance(value, (list, tuple, deque, set, frozenset)):
        for i, item in enumerate(value):
            yield f"{label}[{i}]", name, item
        return
    frame = _frame_children(label, name, value)
    if frame is not None:
        yield from frame
        return
    yield from _attribute_children(label, value)


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return json.dumps(key) if not credential_kind(key) else f"<{redact(key)}>"
    return repr(key)


def _frame_children(label: str, name: str, value: Any) -> Iterable[tuple[str, str, Any]] | None:
    """numpy string/object arrays and pandas frames, series and indexes by their text cells;
    numeric ones hold no text. None for anything else."""
    module = type(value).__module__.split(".")[0]
    if module not in ("numpy", "pandas"):
        return None
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if type(value).__name__ == "DataFrame":
        return ((f"{label}[{_key_text(col)}]", col if isinstance(col, str) else name, value[col])
                for col in value.columns)
    if kind is None:
        return None  # another numpy/pandas object: its attributes
    if kind not in "OSUT" and str(getattr(value, "dtype", "")) not in ("string", "str"):
        return ()
    flat = value.to_numpy().ravel() if hasattr(value, "to_numpy") else value.ravel()
    return ((f"{label}[{i}]", name, item) for i, item in enumerate(flat))


def _attribute_children(label: str, value: Any) -> Iterable[tuple[str, str, Any]]:
    """`obj.attr` for instance attributes: __dict__ (SimpleNamespace, dataclasses, plain
    classes) and __slots__ declared anywhere in the class hierarchy."""
    try:
        attrs = object.__getattribute__(value, "__dict__")
    except Exception:  # no __dict__ (or a proxy that refuses): slots only
        attrs = None
    if isinstance(attrs, dict):
        for attr, item in list(attrs.items()):
            yield f"{label}.{attr}", str(attr), item
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in [slots] if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            try:
                item = object.__getattribute__(value, slot)
            except Exception:  # an unset slot, or a descriptor that refuses
                continue
            yield f"{label}.{slot}", slot, item


# -- source text -----------------------------------------------------------------------------

def _source_findings(source: str) -> Iterable[tuple[str, str, int]]:
    """(label, text, line) for secret-looking string constants and comments in Python source."""
    for label, value, line in _source_strings(source):
        if secret_reason(label, value):
            yield label, value, line
    for text, line in _comments(source):
        match = _COMMENT_ASSIGNMENT.search(text)
        if credential_kind(text.lstrip("# ").strip()) or (match and _looks_random(match.group(2))):
            yield f"the comment on line {line}", text, line


def _looks_random(value: str) -> bool:
    return not value.isdigit() and not value.isalpha()


def _comments(source: str) -> Iterable[tuple[str, int]]:
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                yield token.string, token.start[0]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return


def _source_strings(source: str) -> Iterable[tuple[str, str, int]]:
    """(name, string, line) for string constants in source; name from the assignment target."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    named: set[int] = set()
    for node in ast.walk(tree):
        targets, value = _assignment(node)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                label = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                if label:
                    named.add(id(value))
                    yield label, value.value, node.lineno
        elif isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(item, ast.Constant):
                    named.add(id(item))
                    yield key.value, item.value, item.lineno
        elif isinstance(node, ast.keyword) and node.arg and isinstance(node.value, ast.Constant):
            named.add(id(node.value))
            yield node.arg, node.value.value, node.value.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in named:
            yield "a string literal", node.value, node.lineno


def _assignment(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None]:
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        return [node.target], node.value
    return [], None
