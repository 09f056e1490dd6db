"""`horus validate` refuses what a careful operator would not mean: a relative path, which depends on the
directory Horus happens to start in ("/" under launchd and systemd), and a key set twice, of which only one
value would count. Each is located, and reported with every other error in the file at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from horus.config.loader import load_config

ABSOLUTE = "must be an absolute path (or start with ~)"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "horus", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return [line.strip() for line in proc.stderr.splitlines()[1:]]


def test_every_relative_path_option_is_refused_with_its_location_all_at_once(tmp_path):
    config = {
        "state_dir": "state",
        "monitors": [
            {"name": "bot", "check": {"type": "log_staleness", "log_file": "logs/bot.log", "max_age_seconds": 60}},
            {"name": "report", "check": {"type": "file_exists", "path": "out/report.csv"}},
            {
                "name": "health",
                "check": {"type": "command", "command": ["/bin/true"], "cwd": "scripts"},
                "work_tree": "src/bot",
            },
            {"name": "nobody", "check": {"type": "log_staleness", "log_file": "~nosuchuser42/bot.log"}},
            {"name": "long", "check": {"type": "file_exists", "path": "/tmp/" + "c" * 300}},
            {"name": "nul", "check": {"type": "file_exists", "path": "/tmp/a\u0000b"}},
        ],
    }
    path = tmp_path / "horus.json"
    path.write_text(json.dumps(config))
    lines = error_lines(validate(path))
    assert f"state_dir: {ABSOLUTE}, got 'state'" in lines[-1:] + lines  # sorted after the monitors
    assert f"monitors[0] (bot).check.log_file: {ABSOLUTE}, got 'logs/bot.log'" in lines
    assert f"monitors[1] (report).check.path: {ABSOLUTE}, got 'out/report.csv'" in lines
    assert f"monitors[2] (health).check.cwd: {ABSOLUTE}, got 'scripts'" in lines
    assert f"monitors[2] (health).work_tree: {ABSOLUTE}, got 'src/bot'" in lines
    assert "monitors[3] (nobody).check.log_file: ~nosuchuser42: no such user, got '~nosuchuser42/bot.log'" in lines
    assert "monitors[3] (nobody).check.max_age_seconds: required" in lines  # the other errors are there too
    assert (
        f"monitors[4] (long).check.path: a name in the path is 300 bytes, the system allows 255: got '{'c' * 20}…"
        f"{'c' * 10}'" in lines
    )
    assert any(line.startswith("monitors[5] (nul).check.path: must not contain a NUL character") for line in lines)


def test_absolute_paths_and_paths_under_home_are_accepted(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text(
        "state_dir: ~/.horus\n"
        "monitors:\n"
        "  - name: bot\n"
        "    work_tree: /srv/bot\n"
        "    check: {type: log_staleness, log_file: ~/bot/bot.log, max_age_seconds: 60}\n"
    )
    config = load_config(path)
    assert config.state_dir == Path.home() / ".horus"
    assert config.monitors[0].check.log_file == Path.home() / "bot/bot.log"


def test_a_key_set_twice_in_json_is_located_by_key_path_and_line_with_the_other_errors(tmp_path):
    path = tmp_path / "horus.json"
    path.write_text(
        "{\n"
        '  "monitors": [\n'
        "    {\n"
        '      "name": "bot",\n'
        '      "interval_seconds": 0,\n'
        '      "check": {\n'
        '        "type": "log_staleness",\n'
        '        "log_file": "/srv/bot/bot.log",\n'
        '        "max_age_seconds": 60,\n'
        '        "log_file": "/srv/bot/other.log"\n'
        "      }\n"
        "    }\n"
        "  ]\n"
        "}\n"
    )
    lines = error_lines(validate(path))
    assert "monitors[0] (bot).check.log_file: set twice, on lines 8 and 10: only one value can count; keep one" in lines
    assert any(line.startswith("monitors[0] (bot).interval_seconds: Input should be greater than 0") for line in lines)


def test_a_key_set_twice_on_one_json_line_is_located_by_column(tmp_path):
    path = tmp_path / "horus.json"
    path.write_text('{"monitors": [], "monitors": []}')
    lines = error_lines(validate(path))
    assert "monitors: set twice, on line 1 (columns 2 and 18): only one value can count; keep one" in lines


def test_a_key_set_twice_in_yaml_is_located_by_key_path_and_line_with_the_other_errors(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text(
        "monitors:\n"
        "  - name: bot\n"
        "    check:\n"
        "      type: log_staleness\n"
        "      log_file: /srv/bot/bot.log\n"
        "      max_age_seconds: 60\n"
        "      log_file: /srv/bot/other.log\n"
        "    heal: {action: kill_process, process_pattern: main.py}\n"
        "    heal: {action: kill_process, process_pattern: bot.py}\n"
        "  - name: api\n"
        "    check: {type: port_open, port: 0}\n"
        "defaults:\n"
        "  interval_seconds: 10\n"
        "defaults:\n"
        "  interval_seconds: 20\n"
    )
    lines = error_lines(validate(path))
    assert "defaults: set twice, on lines 12 and 14: only one value can count; keep one" in lines
    assert "monitors[0] (bot).check.log_file: set twice, on lines 5 and 7: only one value can count; keep one" in lines
    assert "monitors[0] (bot).heal: set twice, on lines 8 and 9: only one value can count; keep one" in lines
    assert any(line.startswith("monitors[1] (api).check.port: must be 1..65535") for line in lines)


def test_a_yaml_merge_key_may_be_overridden_because_that_is_what_it_is_for(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text(
        "monitors:\n"
        "  - &bot\n"
        "    name: bot-a\n"
        "    check: {type: log_staleness, log_file: /srv/a/bot.log, max_age_seconds: 60}\n"
        "  - <<: *bot\n"
        "    name: bot-b\n"
    )
    a, b = load_config(path).monitors
    assert (a.name, b.name) == ("bot-a", "bot-b")


def test_a_key_set_twice_in_toml_is_located_by_line_and_named(tmp_path):
    path = tmp_path / "horus.toml"
    path.write_text(
        '[[monitors]]\nname = "bot"\n[monitors.check]\ntype = "log_staleness"\nlog_file = "/a"\nlog_file = "/b"\n'
    )
    lines = error_lines(validate(path))
    assert lines == ["line 6 column 16: key 'log_file' set twice (in [monitors.check]): only one value can count"]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".toml"])
def test_the_shipped_examples_have_no_duplicate_keys_and_no_relative_paths(suffix):
    example = Path(__file__).parents[2] / "examples" / "configs" / f"horus{suffix}"
    assert validate(example).returncode == 0


def test_a_key_set_three_times_is_counted_and_every_place_named(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text("monitors:\n  - name: bot\n    check: {type: port_open, port: 1, port: 2, port: 3}\n")
    lines = error_lines(validate(path))
    assert lines == [
        "monitors[0] (bot).check.port: set 3 times, on line 3 (columns 30, 39 and 48): "
        "only one value can count; keep one"
    ]
