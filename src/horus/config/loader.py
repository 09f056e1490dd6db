"""Read a config file (JSON, YAML or TOML by extension), expand ``${ENV}``, validate, and report every
problem at once, each located with its path and its monitor's name::

    monitors[2] (gateway).check.port: Input should be less than or equal to 65535, got 70000
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from horus.config.models import HorusConfig
from horus.errors import ConfigError, ConfigIssue
from horus.log import redact_url

__all__ = ["SUPPORTED_SUFFIXES", "expand_env", "load_config", "parse_config"]

SUPPORTED_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | os.PathLike[str]) -> HorusConfig:
    """Load and validate ``path``; raise :class:`ConfigError` carrying every issue found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"cannot read: {exc}")]) from exc
    return parse_config(text, suffix=path.suffix.lower(), source=str(path))


def parse_config(text: str, *, suffix: str, source: str = "<config>") -> HorusConfig:
    raw = _parse(text, suffix, source)
    issues: list[ConfigIssue] = []
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


def _parse(text: str, suffix: str, source: str) -> Any:
    if suffix == ".json":
        duplicates: list[str] = []

        def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            counts = Counter(key for key, _ in pairs)
            duplicates.extend(key for key, n in counts.items() if n > 1)
            return dict(pairs)

        try:
            raw = json.loads(text, object_pairs_hook=no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise ConfigError(source, [ConfigIssue(f"line {exc.lineno} column {exc.colno}", exc.msg)]) from exc
        if duplicates:
            issues = [
                ConfigIssue("", f"duplicate key {key!r}: the later value would silently win") for key in duplicates
            ]
            raise ConfigError(source, issues)
    elif suffix in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(source, [ConfigIssue(where, str(problem))]) from exc
    elif suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [ConfigIssue("", str(exc))]) from exc
    else:
        known = ", ".join(SUPPORTED_SUFFIXES)
        raise ConfigError(source, [ConfigIssue("", f"unsupported config format {suffix or '(none)'!r}; use {known}")])
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [ConfigIssue("", "the top level must be a mapping with a 'monitors' list")])
    return raw


def expand_env(document: Any, issues: list[ConfigIssue]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; an unset VAR without default is an issue."""

    def walk(value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):

            def substitute(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in os.environ:
                    return os.environ[name]
                if default is not None:
                    return default
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
    for key in loc:
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
        elif isinstance(node, Mapping) and key in (node.get("type"), node.get("action")):
            continue  # the discriminated union's tag, not a key in the file
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
