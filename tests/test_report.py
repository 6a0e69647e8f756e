"""vaebench report OUT: one static HTML file, everything it shows beside it, nothing fetched."""

from __future__ import annotations

from html.parser import HTMLParser

from vaebench.cli import main


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


def test_report_shows_the_leaderboard_pictures_settings_plugins_and_reproductions(tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text('variants = ["gaussian", "ae-gmm"]\ndataset = "digits"\nhidden = [16]\nlatent_dim = 3\nepochs = 2\n'
                     'is_samples = 10\nseeds = [0, 1]\ndevice = "cpu"\n[runs.repro]\nvariant = "gaussian"\n'
                     'reference = { source = "a test paper, Table 1", value = 30.0, samples = 10, epochs = 2 }\n')
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    tmp_path = out
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
