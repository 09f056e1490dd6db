"""The ``doctor`` check: the audit of `horus doctor`, run on the monitor's service, so drift opens an incident."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field, field_validator

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.doctor import PROBLEM, SERVICE_KINDS, Finding, ServiceFiles, Subject, run_audits

__all__ = ["DoctorCheck", "DoctorOptions"]

# An unhealthy reason names at most this many findings; the details hold them all.
FINDINGS_IN_REASON = 5


class DoctorOptions(CheckOptions):
    type: Literal["doctor"]
    # By default the monitor's own service settings (its `service:`, work_tree, launchd or systemd names).
    service: ServiceFiles | None = None
    # Which kinds of finding count; by default every audit of the service's own files.
    findings: list[str] = Field(default_factory=lambda: list(SERVICE_KINDS), min_length=1)
    fail_on: Literal["problem", "warning"] = "problem"

    @field_validator("findings")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SERVICE_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {', '.join(unknown)}; the kinds are {', '.join(SERVICE_KINDS)}")
        return value


class DoctorCheck(Check[DoctorOptions]):
    """Unhealthy when `horus doctor` finds something wrong with how the service is set up: variables its code,
    .env or compose service reads that its plist or unit does not set, a program not on the job's PATH, paths
    under macOS's privacy-protected folders, logs its user cannot write.

    It audits the monitor's own service (its ``service:`` settings, by default from ``work_tree`` and the
    launchd or systemd check or heal), so a migration that loses a variable opens an incident before the
    service is restarted into it. ``findings`` narrows which kinds count (environment, executables, privacy,
    writable: all by default); ``fail_on: warning`` makes warnings count too (by default only problems do).
    A plist or unit that cannot be read is a problem (one that does not exist, a warning). The reason lists
    the findings, each saying what to change. Each look reads the job and walks the source tree (bounded: at
    most 2000 files, 16 MiB), so an ``interval_seconds`` of a few minutes is plenty for drift.
    """

    options_model = DoctorOptions

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        # Reads files and walks a source tree: off the event loop.
        return await asyncio.to_thread(self._audit)

    def _audit(self) -> CheckResult:
        if self.options.service is None:
            return CheckResult.unhealthy(
                "nothing to audit: give the monitor service: settings (its plist or unit, its source_dir)"
            )
        subject = Subject("", self.options.service)
        subject.load_jobs()
        findings = run_audits(subject, kinds=self.options.findings)
        counted = [f for f in findings if self.options.fail_on == "warning" or f.severity == PROBLEM]
        details: dict[str, Any] = {"findings": [_detail(f) for f in findings]}
        if not counted:
            if findings:
                return CheckResult.healthy(
                    f"no problems ({len(findings)} warning{'s' if len(findings) != 1 else ''}: see horus doctor)",
                    **details,
                )
            return CheckResult.healthy("no findings", **details)
        shown = "; ".join(f"{f.severity}: {f.sentence}" for f in counted[:FINDINGS_IN_REASON])
        if len(counted) > FINDINGS_IN_REASON:
            shown += f"; and {len(counted) - FINDINGS_IN_REASON} more (horus doctor lists them)"
        return CheckResult.unhealthy(shown, **details)


def _detail(finding: Finding) -> dict[str, str]:
    detail = finding.as_dict()
    detail.pop("monitor")
    return detail
