"""Read a config file (JSON, YAML or TOML by extension), expand ``${ENV}``, validate, and report every
problem at once, each located with its path and its monitor's name::

    monitors[2] (gateway).check.port: Input should be less than or equal to 65535, got 70000

A config may be written by mistake or in malice, and a reload reads it inside the running daemon, so
every cost is bounded before it is paid: the bytes read (:data:`MAX_FILE_BYTES`), the nesting
(:data:`MAX_DEPTH`), the values a document holds once its YAML aliases are expanded (:data:`MAX_VALUES`,
and :data:`ALIAS_FLOOR`/:data:`ALIAS_RATIO` for what aliases may add), the text ``${ENV}`` may add
(:data:`MAX_ENV_EXPANSION`) and the monitors (:data:`MAX_MONITORS`). Each refusal is a
:class:`ConfigError` with a located reason, never a traceback.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from horus.config.models import HorusConfig
from horus.errors import ConfigError, ConfigIssue
from horus.files import FILE_KINDS
from horus.log import redact_url

__all__ = [
    "ALIAS_FLOOR",
    "ALIAS_RATIO",
    "MAX_DEPTH",
    "MAX_ENV_EXPANSION",
    "MAX_FILE_BYTES",
    "MAX_MONITORS",
    "MAX_VALUES",
    "SUPPORTED_SUFFIXES",
    "expand_env",
    "load_config",
    "parse_config",
]

SUPPORTED_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def referenced_variables(text: str) -> dict[str, bool]:
    """The ``${VAR}`` names in a config's text, each with whether it has a default (``${VAR:-x}``): what
    `horus service install` captures for a service, which inherits no environment."""
    found: dict[str, bool] = {}
    for match in _ENV_REFERENCE.finditer(text):
        name, has_default = match.group(1), match.group(2) is not None
        # A variable used once without a default must be set: that use decides.
        found[name] = found.get(name, True) and has_default
    return found


# A 100,000-monitor JSON config is about 8 MB; twice that leaves room for comments and long commands.
MAX_FILE_BYTES = 16 * 1024 * 1024
# Nested collections, the top-level mapping being level 1. A config needs about 6; Python's parsers
# (and the walks over the document below) recurse, and fail with a traceback near 1,000.
MAX_DEPTH = 100
# Every key, item and scalar, counted each time an alias repeats it: about 10 a monitor, so 100,000
# monitors fit twice over, while the daemon's memory for a refused reload stays in the hundreds of MB.
MAX_VALUES = 2_000_000
# YAML aliases may bring a document to ALIAS_FLOOR values, or to ALIAS_RATIO times the values written
# out in it if that is more: shared defaults pass, a "billion laughs" stops at its fifth line.
ALIAS_FLOOR = 100_000
ALIAS_RATIO = 10
# Characters that ${ENV} substitutions may add to the config's strings in all, counted once per place
# a string appears (an aliased "${BIG}" expands each time).
MAX_ENV_EXPANSION = MAX_FILE_BYTES
MAX_MONITORS = 100_000


class _Refused(Exception):
    """One problem that stops the loading at once: reading on would cost what the bound is there to save."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(message)
        self.issue = ConfigIssue(location, message)


def load_config(path: str | os.PathLike[str]) -> HorusConfig:
    """Load and validate ``path``; raise :class:`ConfigError` carrying every issue found."""
    path = Path(path)
    try:
        text = _read(path)
    except _Refused as exc:
        raise ConfigError(str(path), [exc.issue]) from None
    except MemoryError:
        raise ConfigError(str(path), [ConfigIssue("", "ran out of memory while reading it")]) from None
    return parse_config(text, suffix=path.suffix.lower(), source=str(path))


def _read(path: Path) -> str:
    """The file's text, read only if it is a regular file of at most MAX_FILE_BYTES, without ever blocking."""
    try:
        # stat first, so that a device or a FIFO is not even opened (opening a FIFO releases its writer).
        kind = FILE_KINDS.get(stat.S_IFMT(os.stat(path).st_mode))
        if kind is not None:
            raise _Refused("", f"{kind}, not a regular file: Horus reads its config only from a regular file")
        # O_NONBLOCK: if it was swapped for a FIFO since the stat, the open still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Refused("", "file not found") from None
    except OSError as exc:
        raise _Refused("", f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        kind = "a file that is not regular" if not stat.S_ISREG(info.st_mode) else None
        kind = FILE_KINDS.get(stat.S_IFMT(info.st_mode), kind)
        if kind is not None:
            raise _Refused("", f"{kind}, not a regular file: Horus reads its config only from a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _Refused("", _too_big(f"{info.st_size:,}"))
        data = bytearray()
        # One byte past the bound tells a file that grew (or whose size lied, as in /proc) from one that fits.
        while len(data) <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise _Refused("", f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _Refused("", _too_big(f"more than {MAX_FILE_BYTES:,}"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Refused(f"line {line} column {column}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    # As text-mode open() did: universal newlines, so a value spanning lines reads the same from any editor.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _too_big(size: str) -> str:
    return f"{size} bytes; a config file may be at most 16 MiB ({MAX_FILE_BYTES:,} bytes)"


def parse_config(text: str, *, suffix: str, source: str = "<config>") -> HorusConfig:
    """Validate the text of a config, as :func:`load_config` does for a file's."""
    try:
        if len(text) > MAX_FILE_BYTES:
            raise _Refused("", f"{len(text):,} characters; a config may be at most 16 MiB ({MAX_FILE_BYTES:,})")
        return _parse_config(text, suffix, source)
    except _Refused as exc:
        raise ConfigError(source, [exc.issue]) from None
    except RecursionError:
        # The bounds above should make this unreachable; if some path was missed, it is still a reason.
        where = _too_deep_at(text, outer=0 if suffix == ".json" else 1)
        raise ConfigError(source, [ConfigIssue(where, _TOO_DEEP)]) from None
    except MemoryError:
        raise ConfigError(
            source, [ConfigIssue("", f"ran out of memory while loading it ({len(text):,} characters)")]
        ) from None


def _parse_config(text: str, suffix: str, source: str) -> HorusConfig:
    raw, issues = _parse(text, suffix, source)
    data = expand_env(raw, issues)
    issues += _duplicate_names(data)
    env_locations = {issue.location for issue in issues}
    try:
        config = HorusConfig.model_validate(data)
    except ValidationError as exc:
        for issue in _translate(exc, data):
            # An unset ${VAR} already explains whatever else is wrong with that value.
            if issue.location not in env_locations and issue not in issues:
                issues.append(issue)
    else:
        if not issues:
            return config
    raise ConfigError(source, sorted(issues, key=_issue_order))


_TOO_MANY_VALUES = f"more than {MAX_VALUES:,} values; a config may hold at most that"
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; a config needs far fewer"


def _parse(text: str, suffix: str, source: str) -> tuple[Any, list[ConfigIssue]]:
    """The document, and the keys it sets twice (reported with every other error, not instead of them)."""
    if suffix == ".json":
        try:
            raw = json.loads(text, object_pairs_hook=_KeyedMapping.from_pairs)
        except json.JSONDecodeError as exc:
            raise ConfigError(source, [ConfigIssue(f"line {exc.lineno} column {exc.colno}", exc.msg)]) from exc
        except RecursionError:
            raise _Refused(_too_deep_at(text, outer=0), _TOO_DEEP) from None
        _bound(raw, text, outer=0)
        if _KeyedMapping.any_repeated(raw):
            # Rare, so only then is the file read again, slowly, to say on which lines each key was set.
            raw = _PositionalJSONDecoder(text).decode(text)
    elif suffix in (".yaml", ".yml"):
        try:
            loader = _YamlLoader(text)  # a SafeLoader that also keeps key lines and bounds the document
            try:
                raw = loader.get_single_data()
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            if problem == "exceeded maximum nesting depth":
                # libyaml's own bound (1,000), met while it looks ahead, before the composer sees MAX_DEPTH.
                outer = 0 if _FLOW_DOCUMENT.match(text) else 1
                where, problem = _too_deep_at(text, outer=outer) or where, _TOO_DEEP
            raise ConfigError(source, [ConfigIssue(where, str(problem))]) from exc
    elif suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [_toml_issue(exc, text)]) from exc
        except RecursionError:
            raise _Refused(_too_deep_at(text, outer=1), _TOO_DEEP) from None
        _bound(raw, text, outer=1)
    else:
        known = ", ".join(SUPPORTED_SUFFIXES)
        raise ConfigError(source, [ConfigIssue("", f"unsupported config format {suffix or '(none)'!r}; use {known}")])
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [ConfigIssue("", "the top level must be a mapping with a 'monitors' list")])
    monitors = raw.get("monitors")
    if isinstance(monitors, list) and len(monitors) > MAX_MONITORS:
        # Said at once: validating each of them would only add a reason per monitor to this one.
        raise _Refused("monitors", f"{len(monitors):,} monitors; one config may hold at most {MAX_MONITORS:,}")
    return raw, _repeated_keys(raw)


def _bound(document: Any, text: str, *, outer: int) -> None:
    """Refuse a parsed JSON or TOML document nested deeper than MAX_DEPTH or holding more than MAX_VALUES
    values (keys included), before anything recursive walks it. ``outer`` is the nesting the text's
    brackets do not show: 1 for TOML's top-level table."""
    values = 0
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(document, (), 1)]
    while stack:
        node, loc, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise _Refused(format_location(loc, document), _TOO_MANY_VALUES)
        if isinstance(node, Mapping | list) and depth > MAX_DEPTH:
            raise _Refused(_too_deep_at(text, outer=outer) or _shortened(format_location(loc, document)), _TOO_DEEP)
        if isinstance(node, Mapping):
            values += len(node)  # its keys
            stack.extend((value, (*loc, str(key)), depth + 1) for key, value in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((item, (*loc, index), depth + 1) for index, item in reversed(list(enumerate(node))))


# A YAML document whose top level is in flow style, so that its first bracket is its first level.
_FLOW_DOCUMENT = re.compile(r"(?:\s|#[^\n]*|---)*[\[{]")

# Brackets outside strings and comments, in JSON, TOML and YAML's flow style.
_NESTING_TOKEN = re.compile(r'''"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|#[^\n]*|[\[\]{}]''')


def _too_deep_at(text: str, *, outer: int) -> str:
    """``line L column C`` of the first bracket nested more than MAX_DEPTH deep, or "" if brackets do not show it."""
    depth = outer
    for match in _NESTING_TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line, column = _line_and_column(text, match.start())
                return f"line {line} column {column}"
        elif token in ("]", "}"):
            depth -= 1
    return ""


def _shortened(location: str) -> str:
    return location if len(location) <= 100 else f"{location[:60]}…{location[-30:]}"


class _KeyedMapping(dict[Any, Any]):
    """A mapping read from the file that remembers which of its keys were set more than once, and where
    (1-based line and column of each time; None where the parser does not say)."""

    repeated: list[tuple[Any, list[tuple[int, int] | None]]]

    def __init__(self, pairs: list[tuple[Any, Any]], positions: list[tuple[int, int] | None] | None = None) -> None:
        super().__init__(pairs)
        self.repeated = []
        if len(self) == len(pairs):
            return
        where: dict[Any, list[tuple[int, int] | None]] = {}
        for index, (key, _) in enumerate(pairs):
            where.setdefault(key, []).append(positions[index] if positions else None)
        self.repeated = [(key, places) for key, places in where.items() if len(places) > 1]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[Any, Any]]) -> _KeyedMapping:
        return cls(pairs)

    @staticmethod
    def any_repeated(node: Any) -> bool:
        if isinstance(node, _KeyedMapping):
            return bool(node.repeated) or any(_KeyedMapping.any_repeated(v) for v in node.values())
        if isinstance(node, list):
            return any(_KeyedMapping.any_repeated(v) for v in node)
        return False


class _PositionalJSONDecoder(json.JSONDecoder):
    """The pure-Python JSON parser, told where each object starts so that its keys can be placed."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self.parse_object = self._parse_object
        # The C scanner ignores parse_object; these two documented-in-source helpers are not in typeshed.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]

    def _parse_object(self, s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        strict, scan_once, _hook, _pairs_hook, *memo = args
        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_once, None, list, *memo)  # type: ignore[attr-defined]
        if len(pairs) == len({key for key, _ in pairs}):
            return _KeyedMapping(pairs), end
        positions: list[tuple[int, int] | None] = [
            _line_and_column(self._text, offset) for offset in _json_key_offsets(self._text, s_and_end[1], end)
        ]
        return _KeyedMapping(pairs, positions if len(positions) == len(pairs) else None), end


_JSON_COLON = re.compile(r"\s*:")


def _json_key_offsets(text: str, start: int, end: int) -> list[int]:
    """Where each key of the JSON object between ``start`` and ``end`` begins, skipping nested values."""
    offsets = []
    depth = 0
    i = start
    while i < end:
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if depth == 0 and _JSON_COLON.match(text, j + 1):
                offsets.append(i)
            i = j + 1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        i += 1
    return offsets


def _line_and_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _PurePythonYamlEvents(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """The events of a YAML text, where PyYAML was built without libyaml."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


class _YamlLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """yaml.safe_load, except that each mapping remembers the keys it was given twice and on which lines,
    and that the document is bounded while it is composed, before any alias is expanded: PyYAML shares an
    aliased node, but everything after it (${ENV}, validation) walks each place it appears.

    The events come from libyaml when PyYAML has it: 4 times as fast as PyYAML's own parser, which took
    over two minutes to reach the bound on values in a 16 MiB file. The composer stays PyYAML's Python
    one, as only it can be bounded."""

    def __init__(self, text: str) -> None:
        self._events: Any = (
            yaml.cyaml.CParser(text)  # type: ignore[attr-defined]
            if yaml.__with_libyaml__
            else _PurePythonYamlEvents(text)
        )
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._values = 0  # in the document so far, each alias counted as all it stands for
        self._written = 0  # of those, the ones written out in the file
        self._depth = 0  # collections open around the next node
        self._deepest = 0  # the deepest level reached, aliases expanded, since the current node began
        self._sizes: dict[str, tuple[int, int]] = {}  # each complete anchor's values and height

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._sizes:
                raise _yaml_refusal(mark, f"the alias *{event.anchor} is inside itself; it would never end")
            node = super().compose_node(parent, index)  # or says the anchor is undefined
            values, height = self._sizes[str(event.anchor)]
            self._reach(self._depth + height, mark)
            self._values += values
            limit = min(MAX_VALUES, max(ALIAS_FLOOR, ALIAS_RATIO * self._written))
            if self._values > limit:
                raise _yaml_refusal(
                    mark,
                    f"the alias *{event.anchor} would expand the document past {limit:,} values (aliases may "
                    f"expand it to {ALIAS_FLOOR:,}, or to {ALIAS_RATIO} times the values written out if that is "
                    f"more, and at most {MAX_VALUES:,}): is this an alias bomb?",
                )
            return node
        self._written += 1
        self._values += 1
        if self._values > MAX_VALUES:
            raise _yaml_refusal(mark, _TOO_MANY_VALUES)
        start, enclosing, outer_deepest = self._values - 1, self._depth, self._deepest
        self._deepest = enclosing
        collection = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if collection:
            self._depth += 1
            self._reach(self._depth, mark)
        node = super().compose_node(parent, index)
        if collection:
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = (self._values - start, self._deepest - enclosing)
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def check_event(self, *choices: type[yaml.Event]) -> bool:
        return bool(self._events.check_event(*choices))

    def peek_event(self) -> Any:
        return self._events.peek_event()

    def get_event(self) -> Any:
        return self._events.get_event()

    def dispose(self) -> None:
        self._events.dispose()

    def _reach(self, depth: int, mark: Any) -> None:
        if depth > MAX_DEPTH:
            raise _yaml_refusal(mark, _TOO_DEEP)
        self._deepest = max(self._deepest, depth)


def _yaml_refusal(mark: Any, message: str) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, message, mark)


def _construct_yaml_mapping(loader: _YamlLoader, node: yaml.MappingNode) -> Any:
    data = _KeyedMapping([])
    yield data
    # Read before construct_mapping folds in ``<<`` merges: overriding a merged key is what merges are for.
    seen: dict[tuple[str, str], list[tuple[int, int] | None]] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            mark = key_node.start_mark
            seen.setdefault((key_node.tag, key_node.value), []).append((mark.line + 1, mark.column + 1))
    data.update(loader.construct_mapping(node))
    data.repeated = [
        (loader.construct_object(_first_key(node, tag, value)), places)
        for (tag, value), places in seen.items()
        if len(places) > 1
    ]


def _first_key(node: yaml.MappingNode, tag: str, value: str) -> yaml.Node:
    return next(k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and (k.tag, k.value) == (tag, value))


# The stubs know only PyYAML's own loader classes; this one is built from the same parts.
_YamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_yaml_mapping)  # type: ignore[type-var]


def _repeated_keys(document: Any) -> list[ConfigIssue]:
    """Every key set twice in one mapping: only one of the values would count, and the reader cannot tell which."""
    issues: list[ConfigIssue] = []
    done: set[int] = set()

    def walk(node: Any, loc: tuple[str | int, ...]) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, (*loc, index))
            return
        if not isinstance(node, _KeyedMapping) or id(node) in done:
            return
        done.add(id(node))  # a YAML alias shares its mapping; say it once
        for key, places in node.repeated:
            location = format_location((*loc, str(key)), document)
            issues.append(ConfigIssue(location, f"{_places(places)}: only one value can count; keep one"))
        for key, value in node.items():
            walk(value, (*loc, str(key)))

    walk(document, ())
    return issues


def _places(places: list[tuple[int, int] | None]) -> str:
    """``set twice, on lines 8 and 10``, or ``set 3 times, on line 1 (columns 2, 18 and 30)``."""
    times = "twice" if len(places) == 2 else f"{len(places)} times"
    known = [p for p in places if p is not None]
    if len(known) != len(places):
        return f"set {times}"
    lines = [line for line, _ in known]
    if len(set(lines)) == 1:
        return f"set {times}, on line {lines[0]} (columns {_and(str(column) for _, column in known)})"
    return f"set {times}, on lines {_and(map(str, lines))}"


def _and(items: Iterable[str]) -> str:
    *rest, last = items
    return f"{', '.join(rest)} and {last}" if rest else last


_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_TABLE_TWICE = re.compile(r"Cannot declare \((.*)\) twice")
_TOML_KEY = re.compile(r"""([A-Za-z0-9_.\-]+|"[^"]*"|'[^']*')\s*=""")


def _toml_issue(exc: tomllib.TOMLDecodeError, text: str) -> ConfigIssue:
    """tomllib's message, located like the other formats' (``line 6 column 16``), and a value set twice
    named by its key and table, which tomllib leaves out."""
    message = str(exc)
    where = _TOML_WHERE.search(message)
    if where is None:
        return ConfigIssue("", message)
    line, column = int(where.group(1)), int(where.group(2))
    message = message[: where.start()]
    if message == "Cannot overwrite a value":
        lines = text.splitlines()
        current = lines[line - 1][: column - 1] if line <= len(lines) else ""
        keys = _TOML_KEY.findall(current)
        tables = [t for t in lines[: line - 1] if t.lstrip().startswith("[")]
        table = f" (in {tables[-1].strip()})" if tables else ""
        if keys:
            key = keys[-1].strip("\"'")
            message = f"key {key!r} set twice{table}: only one value can count"
    elif declared := _TOML_TABLE_TWICE.fullmatch(message):
        name = ".".join(re.findall(r"'((?:[^'\\]|\\.)*)'", declared.group(1)))
        message = f"table [{name}] declared twice: only one can count"
    return ConfigIssue(f"line {line} column {column}", message)


def expand_env(document: Any, issues: list[ConfigIssue]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; an unset VAR without default is an issue.
    Stops with the place where substitutions pass MAX_ENV_EXPANSION characters in all."""
    added = 0

    def walk(value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):

            def substitute(match: re.Match[str]) -> str:
                nonlocal added
                name, default = match.group(1), match.group(2)
                value = os.environ.get(name, default)
                if value is not None:
                    added += len(value)
                    if added > MAX_ENV_EXPANSION:
                        raise _Refused(
                            format_location(loc, document),
                            f"${{ENV}} expansion would add more than 16 MiB ({MAX_ENV_EXPANSION:,} characters) "
                            "to the config's text",
                        )
                    return value
                issues.append(ConfigIssue(format_location(loc, document), f"environment variable {name} is not set"))
                return match.group(0)

            return _ENV_REFERENCE.sub(substitute, value)
        if isinstance(value, Mapping):
            return {key: walk(item, (*loc, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*loc, i)) for i, item in enumerate(value)]
        return value

    return walk(document, ())


def _duplicate_names(data: Mapping[str, Any]) -> list[ConfigIssue]:
    return _duplicates(data, ("name",), "monitor name") + _duplicates(data, ("check", "listen"), "listen address")


def _duplicates(data: Mapping[str, Any], field: tuple[str, ...], what: str) -> list[ConfigIssue]:
    """Each monitor whose ``field`` repeats an earlier monitor's: names must be unique, and two
    monitors cannot listen on one address."""
    monitors = data.get("monitors")
    if not isinstance(monitors, list):
        return []
    first_seen: dict[str, int] = {}
    issues = []
    for index, monitor in enumerate(monitors):
        value: Any = monitor
        for key in field:
            value = value.get(key) if isinstance(value, Mapping) else None
        if not isinstance(value, str):
            continue
        if value in first_seen:
            issues.append(
                ConfigIssue(
                    format_location(("monitors", index, *field), data),
                    f"duplicate {what} {value!r} (first used by monitors[{first_seen[value]}])",
                )
            )
        else:
            first_seen[value] = index
    return issues


def format_location(loc: tuple[str | int, ...], data: Any) -> str:
    """``('monitors', 2, 'check', 'port_open', 'port')`` -> ``monitors[2] (gateway).check.port``.

    Walks the raw document alongside the path so that a monitor's name can be shown and the labels
    pydantic adds for union members (the tag ``port_open``, ``list[str]``) are left out.
    """
    text = ""
    node: Any = data
    tag_seen: Any = None  # the node whose union tag was skipped already
    for key in loc:
        if isinstance(node, Mapping) and node is not tag_seen and key in (node.get("type"), node.get("action")):
            # The discriminated union's tag, not a key in the file; it comes first, so a check type
            # that is also one of its keys (``command``) is still the tag here.
            tag_seen = node
            continue
        if isinstance(key, int):
            text += f"[{key}]"
            node = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            if len(loc) > 1 and loc[0] == "monitors" and text == f"monitors[{key}]" and isinstance(node, Mapping):
                name = node.get("name")
                if isinstance(name, str):
                    text += f" ({name})"
            continue
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif not isinstance(node, Mapping | list) and node is not None:
            continue  # a union member's label under a scalar value
        else:
            node = None
        text += f".{key}" if text else str(key)
    return text


def _translate(exc: ValidationError, data: Any) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the key that is wrong or missing, not at the whole block.
            loc = (*loc, str((error.get("ctx") or {}).get("discriminator", "")).strip("'"))
        location = format_location(loc, data)
        issue = ConfigIssue(location, _message(error))
        if issue not in issues:
            issues.append(issue)
    return issues


# Values under these keys are never echoed: headers and environments hold tokens, and an Apprise URL in
# `notify` usually is one.
_SECRET_BEARING_KEYS = frozenset({"headers", "env", "password", "token", "notify"})


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_invalid":
        what = "check type" if ctx.get("discriminator") == "'type'" else "heal action"
        return f"unknown {what} {ctx.get('tag')!r}; known: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required"
    if kind == "path_type":
        return f"must be a path string, got {error.get('input')!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if "got " in message or not isinstance(value, str | int | float | bool):
        return message
    if isinstance(value, str):
        if _SECRET_BEARING_KEYS.intersection(map(str, error["loc"])):
            return message  # header values and environments hold tokens; never echo them
        value = redact_url(value)
    return f"{message}, got {value!r}"


def _issue_order(issue: ConfigIssue) -> tuple[list[Any], str]:
    parts = re.split(r"(\d+)", issue.location)
    return ([int(p) if p.isdigit() else p for p in parts], issue.message)
