"""The installed environment is the locked one.

`make test` installs .venv from uv.lock only (`uv sync --locked`); requirements-lock.txt is the
lock's export (CI's `make check-lock` proves it). A package whose installed version differs from
the lock is named here, instead of surfacing later as a missing symbol or a segfault (as
torchaudio 2.11.1 beside torch 2.11.0 did).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK_EXPORT = ROOT / "requirements-lock.txt"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)\s*(?:;\s*(.+))?$")


def locked_pins(text: str) -> dict[str, tuple[str, str | None]]:
    """{canonical name: (version, environment marker or None)} of an exported lock."""
    pins = {}
    for line in text.splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = (m.group(2), m.group(3))
    return pins


def installed_versions() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
            if d.metadata["Name"]}


def drift(pins: dict[str, tuple[str, str | None]], installed: dict[str, str]) -> list[str]:
    """One line per package of this platform whose installed version is not the locked one."""
    lines = []
    for name, (version, marker) in sorted(pins.items()):
        if marker and not Marker(marker).evaluate():
            continue
        have = installed.get(name)
        if have != version:
            lines.append(f"{name}: installed {have or 'nothing'}, locked {version}")
    return lines


def test_pin_parser_reads_versions_and_markers():
    pins = locked_pins("# comment\ntorch==2.11.0\n    # via x\nappnope==1.0.0 ; sys_platform == 'darwin'\n")
    assert pins == {"torch": ("2.11.0", None), "appnope": ("1.0.0", "sys_platform == 'darwin'")}


def test_drift_names_the_package_and_skips_other_platforms():
    pins = {"torchaudio": ("2.11.0", None), "appnope": ("1.0.0", "sys_platform == 'nonexistent'")}
    assert drift(pins, {"torchaudio": "2.11.1"}) == ["torchaudio: installed 2.11.1, locked 2.11.0"]
    assert drift(pins, {"torchaudio": "2.11.0"}) == []
    assert drift(pins, {}) == ["torchaudio: installed nothing, locked 2.11.0"]


def test_torch_and_torchaudio_are_pinned_together():
    pins = locked_pins(LOCK_EXPORT.read_text())
    assert pins["torch"][0] == pins["torchaudio"][0] == "2.11.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.11.0"' in pyproject and '"torchaudio==2.11.0"' in pyproject


def test_installed_environment_matches_the_lock():
    if not LOCK_EXPORT.exists():
        pytest.fail(f"{LOCK_EXPORT} is missing: run 'make lock'")
    lines = drift(locked_pins(LOCK_EXPORT.read_text()), installed_versions())
    assert not lines, ("the environment differs from uv.lock (reinstall with: rm -f .venv/.synced && make test):\n"
                       + "\n".join(lines))
