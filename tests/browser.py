"""Pages loaded in a real browser: headless Chromium (Debian's ``chromium`` package).

``load`` runs the page's scripts (a virtual-time budget lets timers and
fetches settle), returns the DOM as the browser built it and every console
message; ``screenshot`` keeps a PNG as a test artifact (``test-artifacts/``,
or ``$DRIFTLINE_TEST_ARTIFACTS``), and with ``DRIFTLINE_UPDATE_SCREENSHOTS=1``
refreshes the README's copy in ``docs/screenshots/``. No host name resolves
inside the browser, so a page that tried to fetch anything from the network
would log the failure and fail its test.

Without Chromium the browser tests skip, unless ``DRIFTLINE_REQUIRE_BROWSER=1``
(CI sets it) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("DRIFTLINE_REQUIRE_BROWSER") == "1":
            pytest.fail("headless Chromium is required (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium); CI requires it")
    return found


def _run(argv: list[str], timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """Chromium in its own process group, the whole group killed if it overruns (its zygote, GPU and
    renderer children would otherwise outlive a timed-out run)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"Chromium did not finish within {timeout:g} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left behind by a finished browser
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@dataclass
class Page:
    dom: str
    console: list[str]


def load(url: str, budget_ms: int = 4000) -> Page:
    """The DOM after the page's scripts ran, and its console messages (errors included)."""
    done = _run([chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}",
                 "--dump-dom", url])
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Page(done.stdout, console)


def screenshot(url: str, name: str, size: str = "1280,1600", budget_ms: int = 4000) -> Path:
    """A PNG of the page, kept under test-artifacts/ (and docs/screenshots/ when asked to update)."""
    artifacts = Path(os.environ.get("DRIFTLINE_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{name}.png"
    done = _run([chromium(), *FLAGS, "--hide-scrollbars", f"--window-size={size}",
                 f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url])
    assert done.returncode == 0 and path.exists(), done.stderr[-2000:]
    assert path.stat().st_size > 20_000, "a blank page screenshots to a few KB"
    if os.environ.get("DRIFTLINE_UPDATE_SCREENSHOTS") == "1":
        (REPO_ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, REPO_ROOT / "docs" / "screenshots" / f"{name}.png")
    return path
