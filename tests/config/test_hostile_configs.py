"""A config written to hurt (an alias bomb, nesting 100,000 deep, a 100 MB file, a FIFO, a ${ENV} that
expands without end) is refused fast, with a located reason and exit status 2, by `horus validate` and
`horus run`; a SIGHUP reload refuses it the same way and keeps the old config running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from horus.config.loader import MAX_DEPTH, MAX_FILE_BYTES, load_config
from horus.errors import ConfigError
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = [sys.executable, "-m", "horus"]
# Each of these must be refused in well under this; the old loader ran for ever or took minutes.
FAST = 10

BILLION_LAUGHS = """\
monitors: []
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def horus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    proc = subprocess.run([*HORUS, *args], capture_output=True, text=True, timeout=FAST + 20, check=False, env=env)
    assert time.monotonic() - started < FAST, f"took {time.monotonic() - started:.1f} s"
    return proc


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """The one reason given, after checking it is a clean exit 2 without a traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].endswith(": 1 error"), proc.stderr
    [reason] = [line.strip() for line in lines[1:]]
    assert reason
    return reason


def validate(path: Path, env: dict[str, str] | None = None) -> str:
    return refusal(horus("validate", "-c", str(path), env=env))


def deep(opening: str, closing: str, depth: int = 100_000) -> str:
    return opening * depth + closing * depth


def test_a_yaml_alias_bomb_is_refused_at_once_at_the_alias_that_would_expand_it_too_far(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text(BILLION_LAUGHS)
    reason = validate(path)
    # Line 7 (f) is where the expanded document would pass 100,000 values.
    assert reason.startswith("line 7 column 8: the alias *e would expand the document past 100,000 values"), reason
    assert "alias" in reason and "100,000" in reason


def test_horus_run_refuses_an_alias_bomb_with_exit_2_before_starting(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text(BILLION_LAUGHS)
    proc = horus("run", "-c", str(path), "--state-dir", str(tmp_path / "state"))
    assert "alias" in refusal(proc)


def test_an_alias_that_refers_to_the_collection_it_is_in_is_refused(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_text("monitors: []\nloop: &loop [1, *loop]\n")
    reason = validate(path)
    assert reason.startswith("line 2 column 17: "), reason
    assert "inside itself" in reason


def test_aliases_used_as_defaults_are_accepted_even_past_100000_values_when_the_file_is_large_enough(tmp_path):
    env = ", ".join(f"V{i}: v{i}" for i in range(30))
    first = (
        "  - {name: m0, check: &check {type: file_exists, path: /tmp/m0},"
        f" heal: &heal {{action: run_script, command: [/bin/true], env: {{{env}}}}}}}\n"
    )
    rest = "".join(f"  - {{name: m{i}, check: {{<<: *check, path: /tmp/m{i}}}, heal: *heal}}\n" for i in range(1, 2000))
    path = tmp_path / "horus.yaml"
    path.write_text("monitors:\n" + first + rest)
    # The aliases bring the document to 164,000 values: past 100,000, but under 10 times the 18,000 written.
    config = load_config(path)
    assert len(config.monitors) == 2000
    assert config.monitors[-1].heal.env["V29"] == "v29"
    assert str(config.monitors[-1].check.path) == "/tmp/m1999"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("horus.json", '{"monitors": [], "a": ' + deep("[", "]") + "}", "line 1 column 122"),
        ("horus.yaml", "monitors: []\na: " + deep("[", "]"), "line 2 column 103"),
        ("horus.yaml", "monitors: []\na: " + deep("{b: ", "}"), "line 2 column 400"),
        ("horus.toml", "monitors = []\na = " + deep("[", "]"), "line 2 column 104"),
        ("horus.toml", "monitors = []\na = " + deep("{b = ", "}"), "line 2 column 500"),
    ],
    ids=["json", "yaml-flow-list", "yaml-flow-map", "toml-array", "toml-inline-table"],
)
def test_nesting_100000_deep_is_refused_with_the_line_and_column_where_it_goes_too_deep(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    reason = validate(path)
    assert reason == f"{where}: nested more than {MAX_DEPTH} levels deep; a config needs far fewer", reason


def test_nesting_just_past_the_limit_is_refused_and_at_the_limit_is_read(tmp_path):
    path = tmp_path / "horus.json"
    path.write_text('{"monitors": [], "a": ' + deep("[", "]", MAX_DEPTH - 1) + "}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "a: unknown key" in [str(issue) for issue in caught.value.issues]  # read, then judged
    path.write_text('{"monitors": [], "a": ' + deep("[", "]", MAX_DEPTH) + "}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "nested more than" in str(caught.value)


def test_an_alias_that_nests_a_deep_anchor_deeper_still_is_refused(tmp_path):
    path = tmp_path / "horus.yaml"
    half = MAX_DEPTH // 2 + 1
    path.write_text(f"monitors: []\na: &a {deep('[', ']', half)}\nb: {'[' * half}*a{']' * half}\n")
    reason = validate(path)
    assert reason.startswith(f"line 3 column {half + 4}: nested more than {MAX_DEPTH} levels deep"), reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (BILLION_LAUGHS, "line 7 column 8: the alias *e would expand the document past 100,000 values"),
        ("monitors: []\na: " + deep("[", "]"), f"line 2 column 103: nested more than {MAX_DEPTH} levels deep"),
        ("monitors: []\nloop: &loop [1, *loop]\n", "line 2 column 17: the alias *loop is inside itself"),
    ],
    ids=["alias-bomb", "deep", "loop"],
)
def test_pyyaml_without_libyaml_holds_the_same_bounds(tmp_path, monkeypatch, text, reason):
    monkeypatch.setattr(yaml, "__with_libyaml__", False)  # PyYAML's own parser, as where libyaml is missing
    path = tmp_path / "horus.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert str(issue).startswith(reason), issue


def test_a_100_mb_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "horus.json"
    with path.open("wb") as f:
        f.truncate(100 * 1024 * 1024)
    reason = validate(path)
    assert reason == "104,857,600 bytes; a config file may be at most 16 MiB (16,777,216 bytes)"
    assert MAX_FILE_BYTES == 16 * 1024 * 1024


def test_a_fifo_config_is_refused_at_once_by_validate_and_run(tmp_path):
    path = tmp_path / "horus.yaml"
    os.mkfifo(path)
    assert validate(path) == "a FIFO, not a regular file: Horus reads its config only from a regular file"
    proc = horus("run", "-c", str(path), "--state-dir", str(tmp_path / "state"))
    assert "a FIFO, not a regular file" in refusal(proc)


def test_more_than_100000_monitors_are_refused_with_their_count(tmp_path):
    path = tmp_path / "horus.json"
    path.write_text(json.dumps({"monitors": [{}] * 100_001}))
    assert validate(path) == "monitors: 100,001 monitors; one config may hold at most 100,000"


def test_env_expansion_that_would_grow_the_config_past_16_mib_is_refused_where_it_happens(tmp_path):
    path = tmp_path / "horus.json"
    strings = ["${HORUS_TEST_BIG}" * 10] * 200
    path.write_text(json.dumps({"monitors": [], "x": strings}))
    reason = validate(path, env={**os.environ, "HORUS_TEST_BIG": "x" * 100_000})
    assert reason.startswith("x[16]: ${ENV} expansion would add more than 16 MiB"), reason


def test_invalid_utf8_is_refused_with_its_line_and_column(tmp_path):
    path = tmp_path / "horus.yaml"
    path.write_bytes(b"monitors: []\nstate_dir: /tmp/\xff\n")
    assert validate(path) == "line 2 column 17: not valid UTF-8 (byte 0xff)"


def test_running_out_of_memory_while_loading_is_a_reason_not_a_traceback(tmp_path):
    path = tmp_path / "horus.json"
    path.write_text(json.dumps({"monitors": [], "x": [f"abcdefgh{i}" for i in range(900_000)]}))
    assert path.stat().st_size < MAX_FILE_BYTES
    # Horus imported, then 48 MB more address space: too little for 900,000 strings.
    script = (
        "import resource, sys\n"
        "import horus.cli\n"
        "vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + 48 * 1024 * 1024,) * 2)\n"
        "horus.cli.main(['validate', '-c', sys.argv[1]])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert refusal(proc).startswith("ran out of memory while"), proc.stderr


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_sighup_reload_refuses_each_hostile_config_with_a_reason_and_keeps_watching(tmp_path):
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.yaml"
    good = (
        "defaults: {start_jitter_seconds: 0}\n"
        f"monitors:\n  - {{name: kept, interval_seconds: 0.2, check: {{type: file_exists, path: {present}}}}}\n"
    )
    config.write_text(good)
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path, "--log-level", "debug")

    def checks() -> int:
        return sum(1 for e in log.named("check.ok") if e.get("monitor") == "kept")

    def reload_rejected(count: int) -> list[str]:
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: len(log.named("config.reload_rejected")) >= count, timeout=FAST)
        errors = log.named("config.reload_rejected")[count - 1]["errors"]
        assert errors and all(errors), errors
        return errors

    try:
        wait_until_sync(lambda: checks() >= 1, timeout=15)
        rss_before = rss_mib(daemon.pid)

        config.write_text(BILLION_LAUGHS)
        [error] = reload_rejected(1)
        assert error.startswith("line 7 column 8: the alias *e ") and "alias" in error

        config.write_text("monitors: []\na: " + deep("[", "]"))
        assert reload_rejected(2) == [
            f"line 2 column 103: nested more than {MAX_DEPTH} levels deep; a config needs far fewer"
        ]

        with config.open("wb") as f:
            f.truncate(100 * 1024 * 1024)
        assert reload_rejected(3) == ["104,857,600 bytes; a config file may be at most 16 MiB (16,777,216 bytes)"]

        config.unlink()
        os.mkfifo(config)
        [error] = reload_rejected(4)
        assert "a FIFO, not a regular file" in error

        # Nothing of the hostile configs stayed behind, and the old config kept running throughout.
        assert rss_mib(daemon.pid) < rss_before + 50
        before = checks()
        wait_until_sync(lambda: checks() > before + 2, timeout=15)

        # The reload is not stuck on the FIFO: a good config after it is taken.
        config.unlink()
        config.write_text(good.replace("kept", "renamed"))
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reloaded"), timeout=15)
        assert daemon.poll() is None
    finally:
        assert stop_daemon(daemon, timeout=15) == 0
