"""`horus doctor`: an audit of how each watched service is set up, and of Horus's own config for it.

Each kind of finding is one module with a ``KIND`` and an ``audit(subject, host) -> list[Finding]``,
registered once in :data:`AUDITS`. The service audits read the service's job (its launchd plist or systemd
unit) beside its source, .env and compose file; the config audits read the monitor's check and heals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from horus.doctor import environment, executables, limits, privacy, reach, supervision, writable
from horus.doctor.files import ServiceFiles
from horus.doctor.findings import PROBLEM, WARNING, Finding, Severity
from horus.doctor.subject import Host, Subject

__all__ = [
    "AUDITS",
    "CONFIG_KINDS",
    "KINDS",
    "PROBLEM",
    "SERVICE_KINDS",
    "WARNING",
    "Audit",
    "Finding",
    "Host",
    "ServiceFiles",
    "Severity",
    "Subject",
    "run_audits",
]


@dataclass(frozen=True)
class Audit:
    kind: str
    run: Callable[[Subject, Host], list[Finding]]
    about: str  # "service": the service's own files; "config": Horus's config for it


AUDITS: tuple[Audit, ...] = (
    Audit(environment.KIND, environment.audit, "service"),
    Audit(executables.KIND, executables.audit, "service"),
    Audit(privacy.KIND, privacy.audit, "service"),
    Audit(writable.KIND, writable.audit, "service"),
    Audit(supervision.KIND, supervision.audit, "config"),
    Audit(limits.KIND, limits.audit, "config"),
    Audit(reach.KIND, reach.audit, "config"),
)
KINDS = tuple(audit.kind for audit in AUDITS)
SERVICE_KINDS = tuple(audit.kind for audit in AUDITS if audit.about == "service")
CONFIG_KINDS = tuple(audit.kind for audit in AUDITS if audit.about == "config")


def run_audits(subject: Subject, host: Host | None = None, kinds: Iterable[str] | None = None) -> list[Finding]:
    """Every finding about ``subject`` from the audits of ``kinds`` (all by default), problems first.

    Never raises for what it finds: an audit that breaks on something unexpected is itself a finding.
    """
    host = host or Host()
    wanted = set(KINDS if kinds is None else kinds)
    # A job that cannot be read matters to every audit of the service's files, and to none of the config's.
    findings = list(subject.reading_findings) if wanted & set(SERVICE_KINDS) else []
    for audit in AUDITS:
        if audit.kind not in wanted:
            continue
        try:
            findings.extend(audit.run(subject, host))
        except Exception as exc:  # one broken audit must not hide what the others find
            findings.append(
                Finding(
                    WARNING,
                    subject.monitor,
                    audit.kind,
                    f"the {audit.kind} audit could not finish ({type(exc).__name__}: {exc})",
                    "check the files the monitor's service settings name; the other audits ran",
                )
            )
    return sorted(findings, key=lambda f: f.severity != PROBLEM)
