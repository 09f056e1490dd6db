from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from horus.config.loader import load_config
from horus.errors import ConfigError

EXAMPLES = Path(__file__).parents[2] / "examples" / "configs"
SEED_MONITOR = {
    "name": "polymarket-bot",
    "enabled": True,
    "min_failures_to_heal": 2,
    "heal_cooldown_seconds": 180,
    "check": {"type": "log_staleness", "log_file": "~/Documents/Dev/polymarket-bot/bot.log", "max_age_seconds": 300},
    "heal": {"action": "kill_process", "process_pattern": "main.py --mode conservative", "signal": "SIGTERM"},
}


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues_of(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_the_seed_articles_monitor_loads_unchanged(tmp_path):
    config = load_config(write(tmp_path, "seed.json", json.dumps({"monitors": [SEED_MONITOR]})))
    [monitor] = config.monitor_settings()
    assert monitor.name == "polymarket-bot"
    assert monitor.min_failures_to_heal == 2 and monitor.heal_cooldown_seconds == 180
    assert monitor.check.log_file == Path.home() / "Documents/Dev/polymarket-bot/bot.log"
    assert monitor.heal.process_pattern == "main.py --mode conservative"


@pytest.mark.parametrize("name", ["horus.json", "horus.yaml", "horus.toml"])
def test_json_yaml_and_toml_give_the_same_config(name):
    assert load_config(EXAMPLES / name) == load_config(EXAMPLES / "horus.json")


def test_defaults_fill_what_a_monitor_leaves_out():
    monitors = {m.name: m for m in load_config(EXAMPLES / "horus.json").monitor_settings()}
    assert monitors["gateway"].interval_seconds == 30
    assert monitors["mc-backend"].interval_seconds == 15
    assert monitors["gateway"].check_timeout_seconds == 10
    assert monitors["gateway"].min_failures_to_heal == 2
    assert monitors["gateway"].heal.label == "com.example.gateway"


def test_a_monitor_without_heal_is_watch_only(tmp_path):
    monitor = {k: v for k, v in SEED_MONITOR.items() if k != "heal"}
    [settings] = load_config(write(tmp_path, "c.json", json.dumps({"monitors": [monitor]}))).monitor_settings()
    assert settings.heal is None


def test_env_variables_and_home_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("BOT_DIR", "/srv/bot")
    text = """
monitors:
  - name: a
    check: {type: log_staleness, log_file: "${BOT_DIR}/bot.log", max_age_seconds: 60}
  - name: b
    check: {type: log_staleness, log_file: "${UNSET_WITH_DEFAULT:-~/fallback}/bot.log", max_age_seconds: 60}
"""
    a, b = load_config(write(tmp_path, "c.yaml", text)).monitor_settings()
    assert a.check.log_file == Path("/srv/bot/bot.log")
    assert b.check.log_file == Path(os.path.expanduser("~/fallback/bot.log"))


def test_every_error_in_the_file_is_reported_at_once_each_with_its_location(tmp_path):
    text = """
monitors:
  - name: bot
    check: {type: log_staleness, log_file: "${HORUS_TEST_UNSET_VAR}", max_age_seconds: -5}
  - name: bot
    check: {type: nonsense}
  - name: gateway
    check: {type: port_open, host: 127.0.0.1, port: 0}
    heal: {action: reboot_the_world}
  - name: api
    check: {type: http_health, url: "http://127.0.0.1:1/health", colour: blue}
"""
    issues = issues_of(write(tmp_path, "c.yaml", text))
    assert "monitors[0] (bot).check.log_file: environment variable HORUS_TEST_UNSET_VAR is not set" in issues
    assert "monitors[0] (bot).check.max_age_seconds: Input should be greater than 0, got -5" in issues
    assert any(i.startswith("monitors[1] (bot).name: duplicate monitor name 'bot'") for i in issues)
    assert any(i.startswith("monitors[1] (bot).check.type: unknown check type 'nonsense'") for i in issues)
    assert any(i.startswith("monitors[2] (gateway).check.port: ") and "got 0" in i for i in issues)
    assert any(
        i.startswith("monitors[2] (gateway).heal.action: unknown heal action 'reboot_the_world'") for i in issues
    )
    assert "monitors[3] (api).check.colour: unknown key" in issues


def test_a_syntax_error_is_located_by_line_and_column(tmp_path):
    [issue] = issues_of(write(tmp_path, "c.json", '{"monitors": [\n  {"name": "a",, }\n]}'))
    assert issue.startswith("line 2 column")


def test_a_duplicate_json_key_is_an_error_not_a_silent_override(tmp_path):
    issues = issues_of(write(tmp_path, "c.json", '{"monitors": [], "monitors": []}'))
    assert "monitors: set twice, on line 1 (columns 2 and 18): only one value can count; keep one" in issues


def test_an_option_named_like_its_check_type_is_located_once(tmp_path):
    text = '{"monitors": [{"name": "a", "check": {"type": "command", "command": [], "cwd": "x"}}]}'
    issues = issues_of(write(tmp_path, "c.json", text))
    assert "monitors[0] (a).check.command: argv must not be empty" in issues
    assert "monitors[0] (a).check.cwd: must be an absolute path (or start with ~), got 'x'" in issues


def test_an_unknown_extension_is_refused(tmp_path):
    [issue] = issues_of(write(tmp_path, "c.ini", "[monitors]"))
    assert "unsupported config format '.ini'" in issue


def test_validate_exits_2_and_prints_every_located_error(tmp_path):
    path = write(
        tmp_path, "c.json", json.dumps({"monitors": [{"name": "x", "check": {"type": "port_open", "port": 0}}]})
    )
    proc = subprocess.run([sys.executable, "-m", "horus", "validate", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "monitors[0] (x).check.port:" in proc.stderr


def test_validate_accepts_the_example_config():
    proc = subprocess.run(
        [sys.executable, "-m", "horus", "validate", "-c", str(EXAMPLES / "horus.json")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok (3 monitors" in proc.stdout


def test_schema_prints_a_json_schema_naming_every_check_type():
    proc = subprocess.run([sys.executable, "-m", "horus", "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(proc.stdout)
    text = json.dumps(schema)
    for check_type in ("log_staleness", "http_health", "port_open", "process_alive", "command"):
        assert check_type in text
    assert "monitors" in schema["properties"]
