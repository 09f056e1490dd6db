"""The one place that decides what a secret looks like, and masks it as ``***``.

Text from outside Horus (a check's reason and output, a heal's summary and output tail, a crash record, an
exception's message, a log tail) passes through here where it enters: the runner redacts every check
result and heal outcome, the notifier every event, Sentinel every log line it quotes. So the logs, the
databases, the status files, the post-mortems and the command line downstream only ever hold masked text.

Masking errs on the side of hiding: a 40-character hex transaction hash is masked like a private key,
because the two cannot be told apart. Redacting twice gives the same text as redacting once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from horus.log import redact_url

__all__ = ["MASK", "redact", "redact_line", "redact_tree", "redact_url", "whole_lines"]

MASK = "***"

# A value ends before the punctuation that ends a sentence ("failed: password=***."), so a reason quoted
# inside a message keeps its full stop, and redacting a message twice changes nothing more.
_END = r"(?=[.:!?]*(?:$|[\s\"',;&})\]]))"
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|digest|token|apikey)\s+)?[^\s\"',;]+?"
    + _END
)
# The token must end the word: ``token_type=bearer max_age=30`` holds no token.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]+?=*" + _END)
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie\s*:\s*).+")
# ``api_key=...``, ``"password": "..."``, ``X-Api-Key: ...``, ``POLY_PRIVATE_KEY=...``, ``basic_auth=...``:
# the name must end in one of these words, so ``tokens_used=5``, ``token_type=bearer`` or ``author: x``
# are left alone.
_KEY_VALUE = re.compile(
    r"""(?ix)
    (?P<key>(?<![\w.-])[\w.-]*?
        (?:api[_-]?key|access[_-]?key|secret|token|passw(?:or)?d|passwd|pwd|passphrase|private[_-]?key|[_-]key
           |credentials?|signature|session[_-]?id|auth)
        (?!\w)["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s"',;&})\]]+?"""
    + _END
    + """)
    """
)
# A command line's ``--password hunter2`` (the ``--password=hunter2`` form is a key=value above).
_SECRET_FLAG = re.compile(
    r"(?i)(?<![\w-])(--?[\w.-]*(?:token|secret|passw(?:or)?d|passphrase|api[_-]?key|auth|credentials?))(\s+)(?![-*])(\S+?)"
    + _END
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_AWS_PREFIX = re.compile("A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)")
_AWS_ACCESS_KEY = re.compile(rf"\b{_AWS_PREFIX.pattern}[A-Z0-9]{{16}}\b")
_PREFIXED_TOKEN = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|sk-[A-Za-z0-9_-]{20,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|xox[abprs]-[A-Za-z0-9-]{10,})"
)
_LONG_HEX = re.compile(r"(?<![A-Za-z0-9])(?:0x)?[0-9a-fA-F]{32,}(?![A-Za-z0-9])")
_LONG_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{32}")


def _has_key_word(low: str) -> bool:
    # Every word _KEY_VALUE and _SECRET_FLAG end on; written out, as it is about three times faster than
    # any() over a tuple or one regex.
    return (
        "key" in low
        or "secret" in low
        or "token" in low
        or "pass" in low
        or "pwd" in low
        or "auth" in low
        or "credential" in low
        or "signature" in low
        or "session" in low
    )


def _has_token_prefix(line: str) -> bool:
    # What every _PREFIXED_TOKEN starts with.
    return ("_" in line or "-" in line) and (
        "gh" in line or "sk-" in line or "_live_" in line or "_test_" in line or "xox" in line
    )


def _mask_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{match.group('sep')}{quote}{MASK}{quote}"


def _mask_if_random(match: re.Match[str]) -> str:
    text = match.group()
    # A secret looks random: digits and both cases. A path or a long snake_case name does not.
    looks_random = (
        not text.startswith("/")
        and any(c.isdigit() for c in text)
        and any(c.isupper() for c in text)
        and any(c.islower() for c in text)
    )
    return MASK if looks_random else text


def redact_line(line: str) -> str:
    """``line`` with its secrets masked as ``***``: URL credentials and token parameters, Authorization
    and Cookie headers, bearer tokens, ``api_key=``/``token=``/``password=``/``auth=``/``*_KEY=`` values and
    ``--password VALUE`` arguments, JWTs, AWS access keys, well-known token formats (GitHub, Slack,
    Stripe, OpenAI), and long random-looking hex or base64 strings (32+ characters)."""
    # Each pattern runs only when a cheap look finds what it needs: every check result passes through
    # here, and most hold no secret (the patterns cost about 50 us a line; the looks about 3).
    low = line.lower()
    if "://" in line or ("=" in line and ("?" in line or "&" in line)):
        line = redact_url(line)
    if "authorization" in low:
        line = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MASK}", line)
    if "bearer" in low:
        line = _BEARER.sub(rf"\1{MASK}", line)
    if "cookie" in low:
        line = _COOKIE.sub(rf"\1{MASK}", line)
    if _has_key_word(low):
        if ":" in line or "=" in line:
            line = _KEY_VALUE.sub(_mask_key_value, line)
        if "-" in line:
            line = _SECRET_FLAG.sub(rf"\1\2{MASK}", line)
    if "eyJ" in line:
        line = _JWT.sub(MASK, line)
    if _AWS_PREFIX.search(line):
        line = _AWS_ACCESS_KEY.sub(MASK, line)
    if _has_token_prefix(line):
        line = _PREFIXED_TOKEN.sub(MASK, line)
    if len(line) >= 32 and _LONG_RUN.search(line):
        line = _LONG_HEX.sub(MASK, line)
        line = _LONG_BASE64.sub(_mask_if_random, line)
    return line


def redact(text: str) -> str:
    """``text`` (one line or many: a program's output tail) with every line's secrets masked."""
    if "\n" not in text and "\r" not in text:
        return redact_line(text)
    # Line by line, so that a separator never reaches across lines to mask the next line's first word.
    return "".join(_redact_keeping_end(line) for line in text.splitlines(keepends=True))


def _redact_keeping_end(line: str) -> str:
    body = line.rstrip("\r\n")
    return redact_line(body) + line[len(body) :]


def whole_lines(text: str, limit: int | None = None, *, cut: bool = False) -> str:
    """The end of ``text`` (at most ``limit`` characters), beginning at a whole line.

    A tail that was cut (``cut``, or cut here to ``limit``) loses its first line, which is only the end of
    one: a line cut in two can lose the name that says what follows is a secret (``word=hunter2``),
    and then no redaction can tell. A tail that is a single cut line is dropped whole.
    """
    if limit is not None and len(text) > limit:
        text, cut = text[-limit:], True
    if not cut:
        return text
    newline = text.find("\n")
    return text[newline + 1 :] if newline >= 0 else ""


def redact_tree(value: Any) -> Any:
    """``value`` with every string in it redacted, through dicts, lists and tuples (a check's or heal's
    details, an event's details); numbers and other values are kept as they are. A key is redacted
    too unless it is a short identifier (``exit_code``), which cannot hold a secret."""
    kind = type(value)
    if kind is str:
        return redact(value)
    if kind in _PLAIN:  # most of a result's details: checked first, as isinstance against Mapping is slow
        return value
    if isinstance(value, Mapping):
        return {_redact_key(key): redact_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_tree(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_tree(item) for item in value)
    if isinstance(value, str):
        return redact(value)
    return value


_PLAIN = frozenset({int, float, bool, type(None)})
# No token shape is an identifier this short, and an identifier holds no separator for a key=value.
_SHORT_IDENTIFIER = 20


def _redact_key(key: Any) -> Any:
    if type(key) is str and len(key) < _SHORT_IDENTIFIER and key.isidentifier():
        return key
    return redact_tree(key)
