"""The monitor-level ``evidence:`` block: where a service's logs, process and crash records are, whatever
its check type."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from horus.config.loader import parse_config
from horus.config.models import EvidenceOptions
from horus.errors import ConfigError


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, suffix=".yaml")
    return [str(issue) for issue in caught.value.issues]


def test_an_evidence_block_on_a_port_check_names_the_services_logs_process_and_crash_dir():
    config = parse_config(
        "monitors:\n"
        "  - name: gateway\n"
        "    check: {type: port_open, port: 18789}\n"
        "    evidence:\n"
        "      logs: [/srv/gateway/gateway.log, ~/gateway/err.log]\n"
        "      process_pattern: gateway.py\n"
        "      user: 0\n"
        "      crash_dir: /srv/gateway/crash\n",
        suffix=".yaml",
    )

    [settings] = config.monitor_settings()

    assert settings.evidence == EvidenceOptions(
        logs=[Path("/srv/gateway/gateway.log"), Path.home() / "gateway/err.log"],
        process_pattern="gateway.py",
        regex=False,
        user=0,
        crash_dir=Path("/srv/gateway/crash"),
    )


def test_a_monitor_without_an_evidence_block_resolves_to_none():
    [settings] = parse_config(
        "monitors:\n  - name: api\n    check: {type: http_health, url: 'http://127.0.0.1:9000/health'}\n",
        suffix=".yaml",
    ).monitor_settings()

    assert settings.evidence is None


def test_the_user_is_named_as_process_alive_names_it():
    me = pwd.getpwuid(os.geteuid()).pw_name
    [settings] = parse_config(
        f"monitors:\n  - name: bot\n    check: {{type: port_open, port: 80}}\n"
        f"    evidence: {{process_pattern: 'bot\\.py$', regex: true, user: {me}}}\n",
        suffix=".yaml",
    ).monitor_settings()

    assert settings.evidence is not None
    assert settings.evidence.user == me and settings.evidence.regex is True


def test_every_mistake_in_an_evidence_block_is_reported_at_once_and_located():
    logs = ", ".join(f"/srv/bot/{n}.log" for n in range(17))
    issues = issues_of(
        "monitors:\n"
        "  - name: relative\n"
        "    check: {type: port_open, port: 80}\n"
        "    evidence: {logs: [bot.log], crash_dir: crash}\n"
        "  - name: unknown-key\n"
        "    check: {type: port_open, port: 81}\n"
        "    evidence: {log: /srv/bot.log}\n"
        "  - name: bad-regex\n"
        "    check: {type: port_open, port: 82}\n"
        "    evidence: {process_pattern: 'bot(', regex: true}\n"
        "  - name: too-many\n"
        "    check: {type: port_open, port: 83}\n"
        f"    evidence: {{logs: [{logs}]}}\n"
        "  - name: nobody\n"
        "    check: {type: port_open, port: 84}\n"
        "    evidence: {process_pattern: bot.py, user: no-such-user-42}\n"
    )

    absolute = "must be an absolute path (or start with ~)"
    assert f"monitors[0] (relative).evidence.logs[0]: {absolute}, got 'bot.log'" in issues
    assert f"monitors[0] (relative).evidence.crash_dir: {absolute}, got 'crash'" in issues
    assert "monitors[1] (unknown-key).evidence.log: unknown key" in issues
    assert any(
        issue.startswith("monitors[2] (bad-regex).evidence.process_pattern: not a valid regular expression")
        for issue in issues
    )
    assert "monitors[3] (too-many).evidence.logs: at most 16 logs, got 17" in issues
    assert "monitors[4] (nobody).evidence.user: no such user on this machine, got 'no-such-user-42'" in issues


def test_an_evidence_block_that_names_nothing_or_a_user_without_a_process_is_refused():
    issues = issues_of(
        "monitors:\n"
        "  - name: empty\n"
        "    check: {type: port_open, port: 80}\n"
        "    evidence: {}\n"
        "  - name: user-only\n"
        "    check: {type: port_open, port: 81}\n"
        "    evidence: {logs: [/srv/bot.log], user: 0}\n"
        "  - name: regex-only\n"
        "    check: {type: port_open, port: 82}\n"
        "    evidence: {logs: [/srv/bot.log], regex: true}\n"
    )

    assert "monitors[0] (empty).evidence: names no evidence: give logs, process_pattern or crash_dir" in issues
    needs_pattern = "user and regex say how process_pattern matches: set process_pattern too"
    assert f"monitors[1] (user-only).evidence: {needs_pattern}" in issues
    assert f"monitors[2] (regex-only).evidence: {needs_pattern}" in issues
