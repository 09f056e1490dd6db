"""``horus doctor [NAME]``: an audit of how each watched service is set up and of Horus's config for it.

Every finding is a sentence that says what is wrong and what to change, grouped by monitor. Exit 0 when no
finding is a problem ("no findings" when there are none at all), 1 when one is, 2 for a usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from horus.config.models import HorusConfig
from horus.doctor import Finding, Subject, run_audits

__all__ = ["register_doctor"]

EXIT_PROBLEM = 1
EXIT_USAGE = 2


def register_doctor(main: click.Group, load: Callable[[Path], HorusConfig], config_option: Any) -> None:
    """Add ``horus doctor`` to ``main``; ``load`` reads a config or exits 2 with its errors."""

    @main.command()
    @config_option
    @click.argument("name", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
    def doctor(config_path: Path, name: str | None, as_json: bool) -> None:
        """Audit each monitor's service and Horus's config for it (or only NAME's), and say what to change.

        For a launchd or systemd service: variables its code, .env or compose service reads that its plist or
        unit does not set; the program it runs, looked up on the job's own PATH; paths under macOS's
        privacy-protected folders; logs and state its user cannot write. For Horus's config: a kill_process
        heal on a service nothing restarts, a staleness limit shorter than the service's heartbeat interval,
        heals that can never run here. Set `service:` on a monitor to say where its files are.
        """
        config = load(config_path)
        monitors = [m for m in config.monitors if name is None or m.name == name]
        if not monitors:
            click.echo(f"{config_path}: no monitor named {name!r}", err=True)
            sys.exit(EXIT_USAGE)
        findings: list[Finding] = []
        for monitor in monitors:
            findings.extend(run_audits(Subject.of_monitor(monitor)))
        if as_json:
            click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
        else:
            click.echo(_report(findings, audited=len(monitors)))
        if any(f.is_problem for f in findings):
            sys.exit(EXIT_PROBLEM)


def _report(findings: list[Finding], *, audited: int) -> str:
    monitors = "1 monitor" if audited == 1 else f"{audited} monitors"
    if not findings:
        return f"no findings ({monitors} audited)"
    lines: list[str] = []
    by_monitor: dict[str, list[Finding]] = {}
    for finding in findings:
        by_monitor.setdefault(finding.monitor, []).append(finding)
    for monitor, found in by_monitor.items():
        lines.append(f"{monitor}:")
        lines.extend(f"  {f.severity}: {f.sentence}" for f in found)
        lines.append("")
    problems = sum(f.is_problem for f in findings)
    warnings = len(findings) - problems
    lines.append(f"{_count(problems, 'problem')} and {_count(warnings, 'warning')} in {monitors} audited")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
