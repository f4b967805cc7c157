"""Render the HTML report in headless Chromium: every plot decodes, every table has its rows.

A check script is injected into a copy of the report; after the page loads it
counts the images whose ``naturalWidth`` is 0 (a broken base64 PNG) and the body
rows of each table, and writes the result into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rectune.experiment import parse_config, run_experiment

CHROMIUM = Path("/usr/bin/chromium")

CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  var rows = {};
  document.querySelectorAll('table[id]').forEach(function (t) {
    rows[t.id] = t.tBodies.length ? t.tBodies[0].rows.length : 0;
  });
  var m = document.createElement('pre');
  m.id = 'rectune-check';
  m.textContent = JSON.stringify({images: imgs.length, bad: bad.length,
    widths: imgs.map(function (i) { return i.naturalWidth; }), rows: rows});
  document.body.appendChild(m);
});
</script></body>"""


def _render(page: Path, profile: Path) -> dict[str, Any]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r'<pre id="rectune-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no check marker in the dumped DOM (rc={proc.returncode}): {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return result


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("headless browser check needs /usr/bin/chromium "
                    "(Debian: apt-get install chromium)")
    cfg = parse_config({
        "experiment": {"name": "browser-check"},
        "data": {"synthetic": 3000},
        "split": {"method": "temporal", "train_fraction": 0.7, "new_fraction": 0.15},
        "metrics": {"k": [5], "n_boot": 50},
        "finetune": {"enabled": False},  # the arm is reported as skipped: a fixed page
        "models": [{"class": "Popularity"},
                   {"class": "SVD", "params": {"n_factors": 4, "n_epochs": 3}}],
    })
    out = tmp_path / "run"
    results = run_experiment(cfg, out, progress=False)
    page = (out / "report.html").read_text(encoding="utf-8")
    # self-contained: no request leaves the file
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK, 1), encoding="utf-8")
    got = _render(checked, tmp_path / "profile")

    n_results = len(results["results"])  # 4 arms x 2 models
    ranked = [r for r in results["results"] if r["status"] == "ok" and r["ranking"]]
    assert n_results == 8 and len(ranked) == 6
    # bars for RMSE, MAE and 6 ranking metrics, coverage, popularity bias, learning curves
    assert got["images"] == 11, got
    assert got["bad"] == 0 and min(got["widths"]) > 0, got
    rows = got["rows"]
    assert rows["metrics"] == n_results
    assert rows["beyond"] == len(ranked)
    assert rows["counts"] == len(ranked)
    assert rows["paired"] == len(results["paired_tests"]) > 0
    assert rows["manifest"] > 10
    assert rows["data"] >= 5
