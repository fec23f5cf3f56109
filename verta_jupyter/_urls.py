"""URLs a user gives us (a tracking server, a model endpoint): checked before any request,
and shown in messages without their password.

One check for every such URL, below the layers that use it (tracking's MLflow store, the
panel's `Endpoint`), so each says the same thing about the same mistake.
"""
from __future__ import annotations

import re
import urllib.parse
from typing import Any


def redact_url(url: str) -> str:
    """`url` with any password (and a bare userinfo) replaced by `***`, even when the URL is
    malformed: this is what goes into messages, before and after parsing."""
    match = re.match(r"^(?P<head>[^/?#@]*?://|[A-Za-z][A-Za-z0-9+.-]*:)?(?P<auth>[^/?#]*)(?P<rest>.*)$",
                     str(url), re.S)
    if match is None or "@" not in match["auth"]:
        return str(url)
    userinfo, _, hostport = match["auth"].rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    shown = f"{user}:***@" if user else "***@"
    return f"{match['head'] or ''}{shown}{hostport}{match['rest']}"


def check_http_url(url: Any, what: str, error: type[Exception], remedy: str
                   ) -> tuple[urllib.parse.SplitResult, tuple[str, str] | None]:
    """(`url` split, without its userinfo; the userinfo as (user, password) or None), or
    `error` naming `what` ("store URL", "endpoint URL") with the password redacted: refused
    are a scheme other than http(s), no host, a port that is not a number in 1..65535, and
    anything `urllib` cannot parse. The same check for every URL a user gives us."""
    example = f"{remedy}, e.g. http://127.0.0.1:5000."
    if not isinstance(url, str):
        raise error(f"{what} {url!r} is not a string. {example}")
    text = url.strip()
    shown = redact_url(text)
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        detail = _scrub_url_parts(str(exc).replace(text, shown), text)
        raise error(f"{what} {shown!r} cannot be parsed ({detail}). {example}") from None
    if parts.scheme not in ("http", "https"):
        raise error(f"{what} {shown!r} is not an http(s) URL. {example}")
    if not parts.hostname:
        raise error(f"{what} {shown!r} has no host name. {example}")
    if port == 0 or (port is None and re.search(r":\d*$", parts.netloc.rpartition("@")[2])
                     and not parts.netloc.endswith("]")):
        raise error(f"{what} {shown!r} has no usable port; give one in 1..65535. {example}")
    userinfo = None
    if parts.username:
        userinfo = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literal
    netloc = host + (f":{port}" if port else "")
    return parts._replace(netloc=netloc), userinfo


def _scrub_url_parts(text: str, url: str) -> str:
    """Take the userinfo of `url` out of a parser's message (it may quote a fragment)."""
    auth = url.partition("//")[2].split("/", 1)[0]
    userinfo = auth.rpartition("@")[0]
    for secret in (userinfo, userinfo.partition(":")[2]):
        if secret:
            text = text.replace(secret, "***")
    return text
