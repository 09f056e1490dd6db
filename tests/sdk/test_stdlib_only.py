"""The SDK's promise to the services it lives in: standard library only, and importing it changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import horus_sdk

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "src"

# Runs with -I (isolated: no PYTHONPATH, no user site, no cwd on sys.path) and -S (no site module): the
# venv's .pth files would otherwise import setuptools' hooks before the first line, and they are not ours.
PROBE = textwrap.dedent(
    """
    import sys
    sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]

    import faulthandler, importlib, json, pkgutil, signal, threading
    handlers = {s: signal.getsignal(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)}

    import horus_sdk
    names = [m.name for m in pkgutil.walk_packages(horus_sdk.__path__, "horus_sdk.")]
    for name in names:
        importlib.import_module(name)

    foreign = sorted(
        m for m in sys.modules
        if m != "__main__" and m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "horus_sdk"
    )
    print(json.dumps({
        "imported": names,
        "foreign": foreign,
        "sdk_file": horus_sdk.__file__,
        "threads": threading.active_count(),
        "signals_changed": [int(s) for s, h in handlers.items() if signal.getsignal(s) is not h],
        "faulthandler": faulthandler.is_enabled(),
    }))
    """
)


def test_every_sdk_module_imports_with_only_the_standard_library() -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(SDK_SRC)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["sdk_file"].startswith(str(SDK_SRC))
    assert {"horus_sdk.heartbeat", "horus_sdk.deadline", "horus_sdk.formats"} <= set(report["imported"])
    assert report["foreign"] == []
    # A guest starts nothing and touches nothing just by being imported.
    assert report["threads"] == 1
    assert report["signals_changed"] == []
    assert report["faulthandler"] is False


def test_public_names_are_listed_and_importable() -> None:
    # Sorting is ruff's job (RUF022); this checks every listed name exists.
    for name in horus_sdk.__all__:
        assert getattr(horus_sdk, name) is not None
    assert {"Heartbeat", "deadline", "DeadlineExceeded", "guard_stream", "StreamStalled"} <= set(horus_sdk.__all__)
