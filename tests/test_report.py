"""vaebench report OUT: one static HTML file, everything it shows beside it, nothing fetched."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from vaebench.cli import main
from vaebench.reporting.html_report import find_chromium

CHROMIUM = find_chromium()


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links, self.tables, self.headings, self.scripts = [], [], 0, [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "table":
            self.tables += 1
        self._in = tag

    def handle_data(self, data):
        if self._in in ("h2", "h3"):
            self.headings.append(data)
        if self._in == "script":
            self.scripts.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report of a small suite: two variants x two seeds and a reproduction row."""
    tmp_path = tmp_path_factory.mktemp("report")
    suite = tmp_path / "suite.toml"
    suite.write_text('variants = ["gaussian", "ae-gmm"]\ndataset = "digits"\nhidden = [16]\nlatent_dim = 3\nepochs = 2\n'
                     'is_samples = 10\nseeds = [0, 1]\ndevice = "cpu"\n[runs.repro]\nvariant = "gaussian"\n'
                     'reference = { source = "a test paper, Table 1", value = 30.0, samples = 10, epochs = 2 }\n')
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "-q"]) == 0
    return out


def test_report_shows_the_leaderboard_pictures_settings_plugins_and_reproductions(report, capsys):
    tmp_path = report
    assert main(["report", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / 'report.html'}" in capsys.readouterr().out
    text = (tmp_path / "report.html").read_text()
    page = Collect()
    page.feed(text)
    assert not page.links, "no external scripts or stylesheets"
    assert "http://" not in text and "https://" not in text
    assert page.sources and all((tmp_path / src).is_file() for src in page.sources)
    assert any(src.startswith("runs/ae-gmm/seed-0/") for src in page.sources)
    assert {"Leaderboard", "Reproductions", "Settings", "Components and plugins"} <= set(page.headings)
    assert "a test paper, Table 1" in text and "addEventListener('click'" in page.scripts[0]
    for run in ("gaussian", "ae-gmm", "repro"):
        assert f"<td>{run}</td>" in text


def test_report_of_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no runs" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None or not __import__("importlib.util").util.find_spec("playwright"),
                    reason="needs a Chromium (Debian: apt-get install chromium) and playwright (pip install playwright)")
def test_the_report_in_a_real_headless_chromium(report, capsys):
    """Loads without console errors, every image resolves, and a click on a header sorts the rows."""
    from playwright.sync_api import sync_playwright

    assert main(["report", str(report)]) == 0
    capsys.readouterr()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            problems = []
            page.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.goto((report / "report.html").as_uri(), wait_until="load")
            assert problems == []
            images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
            assert images and all(ok for _, ok in images), [src for src, ok in images if not ok]

            board = page.locator("table.sortable").first
            headers = board.locator("thead th").all_inner_texts()
            column = headers.index("run")
            cells = lambda: board.evaluate("t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.innerText))")
            names = lambda: [row[column] for row in cells()]
            board.locator("thead th").nth(column).click()
            ascending = names()
            assert ascending == sorted(ascending) and len(set(ascending)) == 3
            board.locator("thead th").nth(column).click()
            assert names() == sorted(ascending, reverse=True)
            number = headers.index("IS-NLL")  # cells read "23.46 ± 0.14": sorted by the mean
            board.locator("thead th").nth(number).click()
            means = [float(row[number].split()[0]) for row in cells()]
            assert means == sorted(means) and len(set(means)) > 1
        finally:
            browser.close()
