"""Fingerprints: the same failure on another day, with other pids, timestamps and ids, gets the same one.

A :func:`fingerprint` is a short hash over what identifies a failure mode: the monitor, its check type, the
:func:`failure_kind` of the check's reason, the exit code or signal, the HTTP status class, and a
:func:`signature` (the most telling log lines, normalised). Whatever changes from one occurrence to the
next (numbers, ids, times, addresses, directories) is masked by :func:`normalise` before hashing.

Since version 2 that includes the names of the service's own objects: the market, order, ticker, user,
bucket, table, key or queue a failure happened on. The same timeout on another market is the same failure,
and "prior incidents matching this pattern" must find it. Names of the *code* are kept: exception classes,
functions and files in frames, field names (``KeyError: 'price'`` and ``KeyError: 'size'`` are two bugs),
and the words that say what happened (``status=REJECTED``, ``[Errno 111]``, ``HTTP 429``, ``exit code 137``).
How the two are told apart, and where that guess can be wrong, is in :func:`normalise`.

Change :data:`FINGERPRINT_VERSION` whenever any of this changes what a fingerprint is computed from:
fingerprints of different versions are never compared, so recurrence counts start afresh.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import re
import signal as signals
from collections.abc import Iterable, Sequence

__all__ = [
    "FAILURE_KINDS",
    "FINGERPRINT_VERSION",
    "failure_kind",
    "fingerprint",
    "normalise",
    "signature",
]

FINGERPRINT_VERSION = 2

MAX_SIGNATURE_CHARS = 300
MAX_SIGNATURE_LINES = 3

# Every kind failure_kind() can return, with what it means. Post-mortems and briefs show these words.
FAILURE_KINDS: dict[str, str] = {
    "stale": "the service stopped writing (log, file or heartbeat older than its limit)",
    "channel_stalled": "the heartbeat goes on but a named channel of real work stopped progressing",
    "no_heartbeat": "no heartbeat was ever seen (no file, no datagram)",
    "no_output": "the service's output stopped growing",
    "missing": "a file the service should write does not exist",
    "too_small": "a file the service writes is smaller than its minimum",
    "process_missing": "fewer processes than required match the pattern",
    "service_down": "the service manager (launchd, systemd, docker) says it is not running",
    "unhealthy": "the service reports itself unhealthy, or failed in a way not classified further",
    "http_status": "the endpoint answered with an unexpected HTTP status",
    "bad_body": "the endpoint answered, but its body was wrong",
    "no_response": "the service accepted the connection but did not answer in time",
    "refused": "the connection was refused: nothing listens on the port",
    "dropped": "the connection was reset or closed, or the answer was not valid HTTP",
    "unreachable": "the host could not be reached",
    "dns": "the host name could not be resolved",
    "tls": "the TLS handshake or certificate failed",
    "command_failed": "the check command exited non-zero or was killed",
    "probe_error": "the probe itself could not observe the service",
}

# First match wins; the patterns read the reasons the checks in horus.checks actually produce.
_KIND_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"^probe did not finish within", "no_response"),
        (r"^probe (failed|crashed)", "probe_error"),
        (r"^channel \S+: (last progress|no progress recorded)", "channel_stalled"),
        (r"^no heartbeat (file at|received on)", "no_heartbeat"),
        (r"^heartbeat file unreadable", "probe_error"),
        (r"^heartbeat .* old, limit", "stale"),
        (r"\blast written .* ago\b", "stale"),
        (r"\bis \S+ bytes?, minimum\b", "too_small"),
        (r"\b(no new (files|rows|lines|artifacts)|did not grow|stopped growing|artifact)", "no_output"),
        (r"^(no process matches|\d+ process(es)? match(es)? .*, minimum)", "process_missing"),
        (r"^container \S+ does not exist", "service_down"),
        (r"^container \S+ is not running", "service_down"),
        (r"^container \S+ is running but (unhealthy|its health check is still starting)", "unhealthy"),
        (r"\bis not loaded in\b|\bis loaded but not running\b", "service_down"),
        (r"\b(does not exist|is a directory, not a file)\b", "missing"),
        # "HTTP 503 in 45 ms, expected 2xx" is the status; anything else after the latency is the body.
        (r"^http \d{3} in [^,]*, expected ", "http_status"),
        (r"^http \d{3} in [^,]*, ", "bad_body"),
        (r"^too many redirects", "http_status"),
        (r"(connection refused|refused the connection)", "refused"),
        (r"^cannot resolve ", "dns"),
        (r"^tls ", "tls"),
        (r"(connection reset by|closed the connection without answering|broke the http protocol)", "dropped"),
        (r"^no answer from .* in time", "no_response"),
        (r"(cannot be reached|^cannot connect to|^connection to .* failed)", "unreachable"),
        (r"^(exit \d+|killed by )", "command_failed"),
    )
)

# What a check type's failure is when no rule above recognised its reason: systemd_service says only
# "<unit> is <state>", and every way artifact_growth fails (too few new files, rows or bytes; a latest
# row too old) is output that stopped.
_FALLBACK_BY_CHECK = {
    "systemd_service": "service_down",
    "launchd_service": "service_down",
    "docker_container": "service_down",
    "artifact_growth": "no_output",
}


def failure_kind(check_type: str, reason: str) -> str:
    """A small, deterministic class of a check's failure reason: one of :data:`FAILURE_KINDS`.

    ``failure_kind("log_staleness", "bot.log last written 312 s ago, limit 300 s") == "stale"``.
    Unknown reasons give ``"unhealthy"``, so a new check type degrades to a coarse class, never an error.
    """
    text = reason.strip()
    for pattern, kind in _KIND_RULES:
        if pattern.search(text):
            return kind
    return _FALLBACK_BY_CHECK.get(check_type, "unhealthy")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Masks. The first ones read the text as written, because the case of a name tells a ticker ("AAPL") from
# a word and an exception class ("KeyError") from data; the text is lower-cased before the last ones.
# Each replaces what varies between two occurrences of the same failure with a placeholder that does not.

# A scheme starts where no scheme character precedes it, so a long hyphenated word is read once, not once
# for each of its letters.
_URL = re.compile(r"(?<![\w+.-])([a-z][a-z0-9+.-]*)://([^/\s:'\"?#]+)[^\s'\"]*", re.IGNORECASE)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2}|\s?utc)?\b", re.IGNORECASE
)
_DATE = re.compile(r"\b\d{4}[-/]\d{2}[-/]\d{2}\b|\b\d{2}/\d{2}/\d{4}\b")
_TIME = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b|\b\d{1,2}:\d{2}\b(?!:)")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b")
# Bracketed ("[::1]:8001"), compressed ("fe80::1") or full eight-group IPv6; "std::map" is not one.
_IPV6 = re.compile(
    r"\[[0-9a-f:.]*:[0-9a-f:.]*\](?::\d{1,5})?"
    r"|(?<![\w:])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})[0-9a-f:]{2,39}(?![\w:])",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+", re.I)
# Absolute, home-relative and Windows paths: the directories differ between machines and deploys,
# the file name is what carries meaning ("bot.py", "bot.log").
_PATH = re.compile(
    r"(?<![\w<>/:])(?:~|[a-z]:\\|\.{1,2}/)?(?:[/\\][\w.@+-]+)+[/\\]?|(?<![\w<>])[a-z]:\\[\w.@+\\-]+", re.IGNORECASE
)
# Host names: only names under a top-level domain that is not also a file extension or a method name
# ("bot.py", "logger.info", "Path.home" are not hosts). The domain (the last two labels) names which
# dependency failed and stays; the labels before it name one node, shard or region of it, and go.
_TOP_LEVEL_DOMAINS = (
    "com|net|org|io|dev|ai|co|cloud|internal|local|lan|corp|arpa|gov|edu|biz|eu|uk|de|fr|nl|ch|jp|au|ca"
)
_TOP_LEVEL_DOMAIN_NAMES = frozenset(_TOP_LEVEL_DOMAINS.split("|"))
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"(?<![\w.@-])(?:{_LABEL}\.){{2,}}(?:{_TOP_LEVEL_DOMAINS})(?![\w-]|\.\w)", re.IGNORECASE)
# key=value, key: value, "key": value and 'key': value pairs, or a quoted string standing alone. A single
# quote opens a string only where no letter precedes it, so the apostrophe of "can't" opens nothing.
_QUOTED = r"\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)"
_PAIR_OR_QUOTED = re.compile(
    r"(?P<key>(?<![\w.-])[A-Za-z_][\w.-]*(?=\s*=(?!=))"
    r"|(?<![\w.-])[a-z_][a-z0-9_.-]*(?=:\s)"
    r"|\"[A-Za-z_][\w.-]*\"(?=\s*[:=])"
    r"|(?<!\w)'[A-Za-z_][\w.-]*'(?=\s*[:=]))"
    r"(?P<separator>\s*=\s*|:\s*)"
    rf"(?P<value>{_QUOTED}|[^\s,;)\]}}&|\"'<>]+)"
    rf"|(?P<quoted>{_QUOTED})"
)
# Keys whose value says what happened, not to what: "status=REJECTED", "state=closed", "error=timeout",
# "reason=POST_ONLY_REJECT", "method=GET", "level=error", "event=order.rejected". Matched on the key's
# last word, so "order_status" and "httpMethod" count too.
_DESCRIBING_KEYS = _words(
    "status state code error err errno errors reason exit signal sig type kind class level levelname severity "
    "method exception exc cause result outcome phase msg message event"
)
# Keys that name an id: whatever their value looks like, it is one occurrence's.
_ID_KEYS = frozenset({"id", "ids", "uuid", "guid"})
# Words that read as upper-case names but name no object: levels, HTTP methods, literals, protocols and
# formats, generic states. Anything else in capitals and without lower-case letters is read as a ticker.
_WELL_KNOWN_WORDS = _words(
    "true false none null nil nan inf yes no on off ok "
    "debug info notice warn warning error err fatal critical crit panic trace alert emerg "
    "get head post put patch delete options connect "
    "http https tcp udp ip tls ssl dns sql json xml csv api url uri eof oom cpu gpu ram io tty utc gmt "
    "up down open closed failed rejected expired canceled cancelled filled pending timeout unknown invalid "
    "denied forbidden unauthorized active inactive running stopped dead alive"
)
# errno and signal names ("ECONNREFUSED", "SIGKILL") name failure modes, though they look like tickers. The
# errno names are this platform's; the ones services print (ECONNREFUSED, ETIMEDOUT, ENOSPC...) are on all.
_ERRNO_NAMES = frozenset(errno.errorcode.values())
_SIGNAL_NAME = re.compile(r"SIG[A-Z0-9]+")
_ERROR_CLASS = re.compile(
    r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Warning|Timeout|Exit|Interrupt|Failure|Fault)"
)
# A file name, perhaps with relative directories or a line number ("bot.py", "src/clob.py", "worker.go:88").
_FILE_NAME = re.compile(r"(?:[\w-]+[./])*[\w-]+\.[a-z][a-z0-9]{0,7}(?::\d+)?")
_TICKER = re.compile(r"[A-Z][A-Z0-9]{1,11}")
# The words of a key: "orderId", "order_id" and "ORDER-ID" all end in "id".
_KEY_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_NAMESPACED = re.compile(r"[A-Za-z0-9][:/][A-Za-z0-9]")
_HYPHEN_INSIDE = re.compile(r"[A-Za-z0-9]-[A-Za-z0-9]")
_NUMBER_WITH_UNIT = re.compile(r"\d+(?:\.\d+)?[a-zµ]{1,3}")
# Instruments and pairs written out in the text: "BTC-USD", "BTC/USDT", "ETH-PERP", "BTC-28MAR26-60000-C".
_INSTRUMENT = re.compile(r"(?<![\w/-])[A-Z][A-Z0-9]{1,9}(?:[-/][A-Z0-9]{1,12})+(?![\w/-])")
# Hyphenated names in prose ("bucket my-data-prod", "market will-it-rain-2028"): see _is_slug.
_HYPHENATED = re.compile(r"(?<![\w.<>/-])[a-z0-9]+(?:-[a-z0-9]+){2,}(?![\w<>/-]|\.\w)", re.IGNORECASE)
# English compounds of three words ("out-of-memory", "end-of-file", "up-to-date") hold one of these;
# names of objects of three words rarely do.
_FUNCTION_WORDS = _words("a an and at by for from in into not of on or per the to via with")
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
# Long opaque tokens (order ids, request ids, base32/base62): letters and digits mixed, 16 or more; an
# exception class with a digit in its name ("S3UploadFailedError") is not one.
_TOKEN = re.compile(
    r"\b(?=[a-z0-9]*\d)(?=[a-z0-9]*[a-z])(?![a-z0-9]*(?:error|exception|warning|timeout|failure|fault)\b)"
    r"[a-z0-9]{16,}\b"
)
# Numbers that name a kind of failure rather than an occurrence of one: HTTP statuses, errno values,
# exit codes, signal numbers and error codes ("code=1006", '"code": -1021') stay; every other number goes.
_MEANINGFUL_NUMBER = re.compile(
    r"(?:\bhttp(?:/\d(?:\.\d)?)?|\b(?:[a-z]+_)?status(?:[ _]code)?|\berrno|\bexit(?:ed)?(?: with)?(?: code| status)?"
    r"|\bsignal|\breturn ?code|\b(?:[a-z]+[ _])?code)[\"']?\s*[=:]?\s*[\"']?-?\d{1,5}\b"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


# A log repeats its lines, and a snapshot's baseline normalises thousands of them: the same line is
# masked once.
@functools.lru_cache(maxsize=2048)
def normalise(text: str) -> str:
    """``text`` lower-cased, with what varies between occurrences of one failure masked.

    Masked: URLs (to ``scheme://host/…``), UUIDs, ISO timestamps, dates, times, IPv4/IPv6 addresses,
    e-mail addresses (``<email>``), the node part of host names (``db-7.prod.example.com`` to
    ``<host>.example.com``), directories of paths (the file name stays), identifiers of the service's domain
    (``<id>``, see below), hex ids, long opaque tokens and numbers.

    An identifier is the value of a ``key=value``, ``key: value`` or ``"key": "value"`` pair, or a quoted
    string, that has no spaces and contains a digit among letters (``ab12cd``, ``orders_2026_11``), a colon
    or slash inside it (``sess:af31``, ``BTC/USDT``), a hyphen (``orders.eu-west-1``; in prose and quotes
    only a name of three or more words, ``'will-it-rain'``, since two-word compounds such as ``keep-alive``
    are as often English), or is in capitals (``AAPL``). The value of a key ending in ``id`` always is one.
    Outside pairs and quotes, instrument pairs (``BTC-USD``, ``ETH-PERP``) and hyphenated names of three or
    more words (``my-data-prod``, but not ``out-of-memory``) are identifiers too.

    Kept, because they tell one failure mode from another: the value of a key that says what happened
    (``status=REJECTED``, ``state=closed``, ``error=timeout``); exception class names, errno and signal
    names, HTTP methods, log levels, literals (``true``, ``none``); file names and function names; plain
    words, lower_snake names and dotted names (``KeyError: 'price'`` is another bug than ``KeyError:
    'size'``: a field name is a name in the code, a market id is a name in the data); quoted phrases; HTTP
    statuses, errno values, exit codes, signal numbers and error codes where the text introduces them as
    such ("HTTP 429", "[Errno 111]", "exit code 137", ``"code": -1021``). Whitespace is collapsed.

    The limit of guessing from the text alone: a plain lower-case word is kept wherever it stands, so
    ``user=alice`` and ``user=bob`` stay apart, as ``state=closed`` and ``state=open`` must.
    """
    if "://" in text:
        text = _URL.sub(lambda m: f"{m.group(1)}://{_mask_host(m.group(2))}/…", text)
    text = _UUID.sub("<uuid>", text)
    text = _TIMESTAMP.sub("<ts>", text)
    text = _DATE.sub("<date>", text)
    text = _IPV4.sub("<ip>", text)
    text = _TIME.sub("<time>", text)
    text = _IPV6.sub("<ip>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    text = _PATH.sub(_basename, text)
    text = _HOST.sub(lambda m: _mask_host(m.group(0)), text)
    text = _PAIR_OR_QUOTED.sub(_mask_pair_or_quoted, text)
    if "-" in text or "/" in text:
        text = _INSTRUMENT.sub(_mask_instrument, text)
        text = _HYPHENATED.sub(lambda m: "<id>" if _is_slug(m.group(0)) else m.group(0), text)
    text = text.lower()
    text = _HEX.sub("<hex>", text)
    text = _TOKEN.sub("<id>", text)
    text = _mask_numbers(text)
    return _SPACE.sub(" ", text).strip()


def _basename(match: re.Match[str]) -> str:
    parts = [part for part in re.split(r"[/\\]", match.group(0)) if part]
    return parts[-1] if parts else match.group(0)


def _mask_host(host: str) -> str:
    labels = host.split(".")
    if len(labels) < 3 or labels[-1].lower() not in _TOP_LEVEL_DOMAIN_NAMES:
        return host
    return "<host>." + ".".join(labels[-2:])


def _mask_pair_or_quoted(match: re.Match[str]) -> str:
    quoted = match.group("quoted")
    if quoted is not None:
        return quoted[0] + _mask_identifier(quoted[1:-1], structured=False) + quoted[-1]
    key, separator, value = match.group("key", "separator", "value")
    structured = "=" in separator or key[0] in "\"'"
    if value[0] in "\"'":
        return key + separator + value[0] + _mask_value(key, value[1:-1], structured=structured) + value[-1]
    # A bare value may end a sentence or a clause: the full stop or colon is not part of it.
    bare = value.rstrip(".:")
    return key + separator + _mask_value(key, bare, structured=structured) + value[len(bare) :]


def _mask_value(key: str, value: str, *, structured: bool) -> str:
    words = _KEY_WORD.findall(key)
    last_word = words[-1].lower() if words else ""
    if any(char.isspace() for char in value):
        return _mask_identifier(value, structured=structured)  # a phrase, whatever its key: see there
    if not value or _is_well_known(value) or last_word in _DESCRIBING_KEYS:
        return value
    if last_word in _ID_KEYS:
        return "<id>"
    return _mask_identifier(value, structured=structured)


def _mask_identifier(value: str, *, structured: bool) -> str:
    """``<id>`` for a name of the service's data; names of its code, words and phrases are returned as given.

    ``structured`` is for values of ``key=value`` and JSON pairs, which a program wrote: there a hyphen
    between two words is a name (``bucket=my-data``); in prose and quotes it is as often English
    (``'keep-alive'``), so only a longer hyphenated name counts there.
    """
    if any(char.isspace() for char in value):
        # A phrase ('no book for BTC-USD', "order failed market=x1"): its words stay, its pairs and
        # quotes are read like any others. It cannot hold its own quote character, so this ends.
        return _PAIR_OR_QUOTED.sub(_mask_pair_or_quoted, value)
    if not value or _is_well_known(value):
        return value
    if _ERROR_CLASS.fullmatch(value) or _FILE_NAME.fullmatch(value):
        return value
    has_letter = any(char.isalpha() for char in value)
    if not has_letter:
        return value  # a bare number: masked, or kept as a status or code, with the other numbers
    has_digit = any(char.isdigit() for char in value)
    if _TICKER.fullmatch(value) or (has_digit and not _NUMBER_WITH_UNIT.fullmatch(value)):
        return "<id>"
    if _NAMESPACED.search(value):
        return "<id>"
    hyphenated = _HYPHEN_INSIDE.search(value) is not None
    if hyphenated and (structured or _is_slug(value) or value.upper() == value):
        return "<id>"
    return value


def _is_well_known(value: str) -> bool:
    return (
        "<" in value  # already a placeholder
        or value.lower() in _WELL_KNOWN_WORDS
        or value in _ERRNO_NAMES
        or _SIGNAL_NAME.fullmatch(value) is not None
    )


def _is_slug(text: str) -> bool:
    """A hyphenated name of an object rather than an English compound: four or more words, or three of
    which none is a function word ("my-data-prod", "eu-west-1", but not "out-of-memory")."""
    words = text.lower().split("-")
    if len(words) < 3 or not any(char.isalpha() for char in text):
        return False
    return len(words) >= 4 or not _FUNCTION_WORDS.intersection(words)


def _mask_instrument(match: re.Match[str]) -> str:
    """``<id>`` for a pair of two or more named legs ("BTC-USD"), not for "TCP/IP", "HTTP/2" or "UTF-8"."""
    legs = [leg for leg in re.split(r"[-/]", match.group(0)) if any(char.isalpha() for char in leg)]
    if len(legs) < 2 or all(leg.lower() in _WELL_KNOWN_WORDS for leg in legs):
        return match.group(0)
    return "<id>"


def _mask_numbers(text: str) -> str:
    pieces: list[str] = []
    position = 0
    for kept in _MEANINGFUL_NUMBER.finditer(text):
        pieces.append(_NUMBER.sub("<n>", text[position : kept.start()]))
        pieces.append(kept.group(0))
        position = kept.end()
    pieces.append(_NUMBER.sub("<n>", text[position:]))
    return "".join(pieces)


# An exception line: "ValueError: ...", "asyncio.exceptions.TimeoutError", "requests.exceptions.HTTPError: 429".
_EXCEPTION = re.compile(
    r"(?:^|[\s:(\[])((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout|Exit|Interrupt))\b(?::|$)"
)
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+, in \S+')
_TELLING = re.compile(
    r"\b(error|exception|fatal|critical|panic|traceback|timed? ?out|timeout|refused|failed|failure|denied|"
    r"killed|rate[ _-]?limit|too many requests|unavailable|deadlock|stuck|hung|oom|out of memory)\b"
    r"|\b(?:http|status)\W{0,3}[45]\d\d\b",
    re.IGNORECASE,
)


def signature(lines: Sequence[str], crash_summary: str | None = None) -> str:
    """The most telling lines of a log tail, normalised, de-duplicated and joined with `` | ``.

    In order: the crash summary (where the service said it was stuck), then each traceback's exception
    line, newest first, followed by its innermost frame, then other lines that speak of errors (newest
    first). Ordinary progress lines are left out: which market a bot was scanning when it hung varies,
    the failure does not. At most a few lines and :data:`MAX_SIGNATURE_CHARS` characters; empty when
    nothing telling was seen.
    """
    chosen: list[str] = []
    if crash_summary:
        chosen.append(crash_summary)
    chosen.extend(_exception_lines(lines))
    chosen.extend(line for line in reversed(lines) if _TELLING.search(line) and not _FRAME.match(line))
    picked: list[str] = []
    for line in _unique(normalise(line) for line in chosen):
        if line == "traceback (most recent call last):":
            continue
        picked.append(line)
        if len(picked) == MAX_SIGNATURE_LINES:
            break
    text = " | ".join(picked)
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _exception_lines(lines: Sequence[str]) -> list[str]:
    """Exception lines newest first, each followed by the frame just above it (where it was raised)."""
    found: list[str] = []
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if _FRAME.match(line) or not _EXCEPTION.search(line):
            continue
        found.append(line)
        for above in range(index - 1, max(-1, index - 4), -1):
            if _FRAME.match(lines[above]):
                found.append(lines[above])
                break
    return found


def _unique(items: Iterable[str]) -> list[str]:
    return [item for item in dict.fromkeys(items) if item]


def fingerprint(
    *,
    monitor: str,
    check_type: str,
    failure_kind: str,
    signature: str,
    exit_code: int | None = None,
    signal: int | str | None = None,
    http_status: int | None = None,
) -> str:
    """A stable 16-hex-digit hash of one failure mode of one monitor (see :data:`FINGERPRINT_VERSION`).

    ``signature`` should come from :func:`signature`; ``http_status`` counts only by class (``"4xx"``),
    ``signal`` by name (9 and ``"SIGKILL"`` are the same).
    """
    canonical = {
        "version": FINGERPRINT_VERSION,
        "monitor": monitor,
        "check_type": check_type,
        "failure_kind": failure_kind,
        "exit_code": exit_code,
        "signal": _signal_name(signal),
        "http_status": None if http_status is None else f"{http_status // 100}xx",
        "signature": signature,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _signal_name(value: int | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        try:
            return signals.Signals(abs(value)).name
        except ValueError:
            return f"SIG{abs(value)}"
    name = value.upper()
    return name if name.startswith("SIG") else f"SIG{name}"
