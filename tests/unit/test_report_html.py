"""``driftline report``: one self-contained page, its size bounded by features, checked in a real browser."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

import driftline
from tests.browser import load, screenshot


def frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """25 features: 20 numeric, 5 categorical; a score and a label for the model's calibration."""
    columns: dict[str, np.ndarray] = {f"n{i}": rng.normal(i + (shift if i < 3 else 0), 1, rows) for i in range(20)}
    columns |= {f"c{i}": rng.choice(["red", "green", "blue", "<b>x&y</b>"], rows) for i in range(5)}
    score = 1 / (1 + np.exp(-(columns["n0"] - 0.2)))
    columns["score"] = score
    columns["y"] = (rng.random(rows) < score).astype(int)
    return columns


def test_report_is_self_contained_bounded_and_renders_in_chromium(tmp_path) -> None:
    rng = np.random.default_rng(0)
    profile = driftline.profile(frame(rng, 20_000), "churn", label="y", score="score")
    pages = {}
    for rows in (2_000, 100_000):
        report = driftline.check(frame(rng, rows, shift=0.5), profile)
        pages[rows] = report.to_html()
    small, large = (len(pages[r].encode()) for r in (2_000, 100_000))
    assert large < 2_000_000, "under 2 MB for 25 features"
    assert abs(large - small) / small < 0.05, f"size independent of rows: {small} vs {large} bytes"
    page = pages[100_000]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "nothing fetched from the network"
    assert "<b>x&y</b>" not in page and "&lt;b&gt;x&amp;y&lt;/b&gt;" in page, "data is escaped, never markup"
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    loaded = load(path.as_uri())
    assert loaded.console == [], f"console messages: {loaded.console}"
    rows_in_table = re.findall(r'<tr data-feature="([^"]+)"', loaded.dom)
    assert rows_in_table[:25] == list(profile.features) and rows_in_table[25:] == ["(multivariate)"]
    assert all(f'id="f-{name}"' in loaded.dom for name in ("n0", "n19", "c4")), "a chart per feature"
    assert loaded.dom.count("<svg") >= 25
    assert 'id="performance"' in loaded.dom and "roc_auc" in loaded.dom
    drifted = re.findall(r'<tr data-feature="(n\d+)"><td>.*?</td><td>numeric</td><td><b class="bad">drift', loaded.dom)
    assert set(drifted) >= {"n0", "n1", "n2"}, "the shifted features show as drifted in the page"
    screenshot(path.as_uri(), "report")


def test_report_command_writes_the_page_and_refuses_two_sources(tmp_path) -> None:
    rng = np.random.default_rng(1)
    reference, current = frame(rng, 5_000), frame(rng, 1_000)
    for name, data in (("ref", reference), ("cur", current)):
        lines = [",".join(data)] + [",".join(str(data[c][i]) for c in data) for i in range(len(data["y"]))]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    cli = [sys.executable, "-m", "driftline.cli.main"]
    subprocess.run([*cli, "profile", str(tmp_path / "ref.csv"), "--model", "m", "--label-column", "y",
                    "--score-column", "score", "-o", str(tmp_path / "m.profile")], check=True, capture_output=True)
    done = subprocess.run([*cli, "report", str(tmp_path / "cur.csv"), "--profile", str(tmp_path / "m.profile"),
                           "-o", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "-> " in done.stdout and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    both = subprocess.run([*cli, "report", str(tmp_path / "cur.csv"), "--window-from", "0", "--model", "m",
                           "-o", str(tmp_path / "x.html")], capture_output=True, text=True)
    assert both.returncode == 2 and "give one source" in both.stderr and "Traceback" not in both.stderr
