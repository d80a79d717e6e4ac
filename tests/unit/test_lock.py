"""The environment `make` built is the lock: what CI tested is what a fresh clone installs."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements" / "lock.txt"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)\s*(?:;\s*(.+))?$")


def locked() -> dict[str, str]:
    """Package -> exact version, for the lines whose environment marker holds on this interpreter."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line.strip())
        if match and (match.group(3) is None or Marker(match.group(3)).evaluate()):
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_lock_pins_every_dependency_exactly():
    pins = locked()
    assert {"confluent-kafka", "numpy", "scipy", "river", "fastavro", "starlette", "pytest"} <= set(pins)
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), pins


@pytest.mark.skipif(not (Path(sys.prefix) / ".installed").exists(),
                    reason="only the virtualenv `make` builds from the lock is held to it")
def test_the_make_virtualenv_holds_exactly_the_locked_versions():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {name: (version, installed[name]) for name, version in locked().items()
              if name in installed and installed[name] != version}
    missing = sorted(set(locked()) - set(installed) - {"pip", "setuptools", "wheel"})
    assert differ == {}, f"installed versions differ from the lock (locked, installed): {differ}"
    assert missing == [], f"locked but not installed: {missing}"
    ours = {name for name in installed if name != "driftline"} - set(locked())
    assert ours <= {"uv"}, f"installed but not in the lock: {sorted(ours)}"
