"""Variables a service manager sets for every job itself, so a job need not list them."""

from __future__ import annotations

__all__ = ["ALWAYS_SET"]

_BOTH = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "PATH", "PWD"})
ALWAYS_SET: dict[str, frozenset[str]] = {
    # launchd gives every job these (PATH its default, when the plist sets none).
    "launchd": _BOTH | {"TMPDIR", "XPC_SERVICE_NAME", "XPC_FLAGS", "__CF_USER_TEXT_ENCODING"},
    # systemd's own, documented in systemd.exec(5) under "Environment Variables in Spawned Processes".
    "systemd": _BOTH
    | {
        "LANG",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "MAINPID",
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "XDG_RUNTIME_DIR",
    },
}
