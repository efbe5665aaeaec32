"""URLs as logs and messages may show them: without the values of their query string and userinfo.

Webhook URLs carry their receivers' tokens in the query string, image URLs and Kling's video links
carry signatures there (presigned S3 GETs, CDN links), the callback URL carries its job token. Any of
them can surface in an error's text (httpx's, a receiver's answer echoing the request) or in httpx's
own log line for each request. `redact` strips them from any text; `RedactingFilter` does it to the
records of the HTTP libraries' loggers.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

HIDDEN = "***"
# A query string stuck to what precedes it ("/x?token=..."), a URL's or a path's.
_QUERY = re.compile(r"(?<=[^\s'\"<>])\?([^\s'\"<>#]+)")
_USERINFO = re.compile(r"(?<=://)[^/\s'\"<>@]*@")


def redact_url(url: str) -> str:
    """`url` with its query values and its userinfo hidden, its fragment dropped; names are kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rpartition("@")[2]
    head = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return head + (f"?{_hide_values(parts.query)}" if parts.query else "")


def redact(text: str, *urls: str) -> str:
    """`text` with every URL's (and bare path's) query values and userinfo hidden; the query strings of
    `urls` (the ones the caller used) are hidden wherever they appear, even without their '?'."""
    for url in urls:
        try:
            query = urlsplit(url).query
        except ValueError:
            continue
        if query:
            text = text.replace(query, _hide_values(query))
    text = _USERINFO.sub(f"{HIDDEN}@", text)
    return _QUERY.sub(lambda match: "?" + _hide_values(match.group(1)), text)


def _hide_values(query: str) -> str:
    return "&".join(f"{pair.partition('=')[0]}={HIDDEN}" if "=" in pair else HIDDEN for pair in query.split("&"))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (its arguments formatted in) with URLs redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactingFilter()


def redact_http_library_logs() -> None:
    """httpx logs every request's full URL at INFO, httpcore its connections at DEBUG: redact both."""
    for name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
        library = logging.getLogger(name)
        if _FILTER not in library.filters:
            library.addFilter(_FILTER)
