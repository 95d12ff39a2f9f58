"""MLflow's UI as a reader opens it, rendered by headless Chromium: Table 4's runs page and the compare view.

The pages come from the report tests' MLflow server (the Makefile's command,
the results tree's runs: Table 4's rows BL and JASRNet); Debian's
``chromium`` (``.ci/run`` installs it) renders them in a fresh profile and
dumps the DOM once the app has loaded, and the test reads what a reader
reads: the runs grid's cells (run name, PSNR, NME, switches) and the compare
view's highlighted rows. The facts behind them are checked over REST in
``test_mlflow_server.py`` (which runs after this file and stops the server).
Where no Chromium is installed the test says so and skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_helpers import PROFILE, ROWS, SWITCHES, experiment_ids, search_runs

from jasrbench import tracking

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                              "chromium; .ci/run installs it): browser check skipped")


def render(url: str, profile: Path, width: int = 2400, height: int = 1200) -> str:
    """The DOM of ``url`` after Chromium has run its scripts (a fresh profile; stopped by its process group)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               # Virtual time runs ahead while the page is idle and waits while it fetches from the server.
               "--virtual-time-budget=30000", "--dump-dom", url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=120)
    finally:  # the browser's helpers (zygote, renderers) share its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return out.decode("utf-8", errors="replace")


class _Dom(HTMLParser):
    """Cells of the runs grid (``rows[run_id][col_id]``), link texts, and the compare view's highlighted rows."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.row = 0, None
        self.rows: dict[str, dict[str, str]] = {}
        self.links: dict[str, str] = {}  # href → text
        self.diff_rows: list[list[str]] = []  # <tr class="diff-row">: [key, value, value, ...]
        self._cell = self._link = self._diff = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in self.VOID:
            self.depth += 1
        if a.get("role") == "row" and a.get("row-id"):
            self.row = a["row-id"]
        if a.get("role") == "gridcell" and self.row:
            self._cell = [self.depth, a.get("col-id"), ""]
        if tag == "a" and a.get("href"):
            self._link = [self.depth, a["href"], ""]
        if tag == "tr" and "diff-row" in (a.get("class") or "").split():
            self._diff = [self.depth, []]
        if self._diff and tag in ("th", "td"):
            self._diff[1].append("")

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if self._cell and self.depth == self._cell[0]:
            self.rows.setdefault(self.row, {})[self._cell[1]] = self._cell[2].strip()
            self._cell = None
        if self._link and self.depth == self._link[0]:
            self.links[self._link[1]] = self._link[2].strip()
            self._link = None
        if self._diff and self.depth == self._diff[0]:
            self.diff_rows.append([v.strip() for v in self._diff[1]])
            self._diff = None
        self.depth -= 1

    def handle_data(self, data):
        for part in (self._cell, self._link):
            if part:
                part[2] += data
        if self._diff and self._diff[1]:
            self._diff[1][-1] += data


def parse(html: str) -> _Dom:
    dom = _Dom()
    dom.feed(html)
    return dom


def _number(text: str) -> float | None:
    return None if text in ("-", "") else float(text)


@needs_chromium
def test_table4_page_and_compare_view_in_chromium(mlflow_server, results_tree, tmp_path):
    server = mlflow_server
    table4 = experiment_ids(server)[f"jasrbench/{PROFILE}/table4"]
    runs = {r["tags"]["model"]: r for r in search_runs(server, [table4])}
    assert set(runs) == set(ROWS)

    # The table view the experiment's description links to, as a first-time reader's browser shows it.
    url = f"{server.url}/{tracking.runs_page(table4, view=True)}"
    dom = parse(render(url, tmp_path / "profile-table"))
    if not all(r["run_id"] in dom.rows for r in runs.values()):  # a slow first load: once more, given more time
        dom = parse(render(url, tmp_path / "profile-table-again", height=1400))
    for model, run in runs.items():
        cells = dom.rows.get(run["run_id"])
        assert cells, f"{model}'s row is not in the rendered runs grid of {url}"
        # Its name (the paper's row first), its PSNR/NME as logged ("-" where the model does not do the task) …
        assert dom.links[f"#/experiments/{table4}/runs/{run['run_id']}"] == f"{ROWS[model]}: {model} on 300w/common"
        for metric in ("psnr", "nme"):
            shown = _number(cells[f"metrics.`{metric}`"])
            logged = run["metrics"].get(metric)
            assert shown == (pytest.approx(logged, rel=1e-12) if logged is not None else None), (model, metric)
        # … and the switches that tell it apart.
        assert {k: cells[f"params.`{k}`"] for k in SWITCHES[model]} == SWITCHES[model]

    # MLflow's compare view of BL's SR half and JASRNet: exactly the differing params are highlighted.
    pair = [runs["jasrnet_bl_sr"]["run_id"], runs["jasrnet"]["run_id"]]
    query = urllib.parse.urlencode({"runs": f'["{pair[0]}","{pair[1]}"]', "experiments": f'["{table4}"]',
                                    "workflowType": "machine_learning"}, quote_via=urllib.parse.quote)
    dom = parse(render(f"{server.url}/#/compare-runs?{query}", tmp_path / "profile-compare", width=1600))
    differing = {row[0]: row[1:] for row in dom.diff_rows}
    for key in SWITCHES["jasrnet"]:
        assert differing.get(key) == [SWITCHES["jasrnet_bl_sr"][key], SWITCHES["jasrnet"][key]], (key, differing)
    assert not {k for k in differing if k.startswith("arch.")} - set(SWITCHES["jasrnet"]), differing
