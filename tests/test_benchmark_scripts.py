"""The benchmark scripts run end to end (tiny settings) and their reports agree with their own figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import speed

    yield speed
    sys.modules.pop("speed", None)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows of ``text``, keyed by their first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(re.match(r"[-+]?[\d,]+(\.\d+)?", cell.replace("**", "")).group(0).replace(",", ""))


def test_speed_benchmark_reports_every_target_with_its_verdict(benchmark_modules, shared_data, tmp_path):
    speed = benchmark_modules
    out = tmp_path / "RESULTS.md"
    assert speed.main(["--data-dir", str(shared_data), "--repeats", "1", "--steps", "10", "--is-images", "2", "--matmul-size", "256",
                       "--harness-images", "400", "--configs", "iwae", "--out", str(out)]) == 0
    text = out.read_text()
    rows = table_rows(text)
    assert number(rows["IS-NLL, K = 1000"][0]) > 0
    # the configuration asked for (the IWAE paper's, batch 20: compiling one costs the suite ~15 s), with its
    # reference loop, the compiled and the eager step, and the compile time
    training = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| iwae: 784-200-200-50")]
    assert len(training) == 4 and "examples: 784-400-20" not in text
    for cells in training:
        if "compiling the step" in cells[1]:
            assert re.search(r"first round [\d.]+ s", cells[2])
            continue
        images_per_s, ms_per_step = number(cells[2].strip()), number(cells[3].strip())
        batch = 20 if "batch 20" in cells[0] else 128
        assert images_per_s > 0 and ms_per_step == pytest.approx(1e3 * batch / images_per_s, rel=0.01)
    for name, plain in (("iwae", "plain eager loop"),):
        measured, met = rows[f"{name}: training ≥ 3× the {plain}"]
        ratio = float(re.search(r"compiled ([\d.]+)×", measured).group(1))
        assert met.startswith("yes" if ratio >= 3 else "no")
        if name == "iwae" and ratio < 2:
            assert "fails" in met
    for precision in ("float32", "bfloat16"):
        seconds, met = rows[f"IS-NLL K = 5000 on 10,000 test images ≤ 180 s, decoder in {precision}"]
        assert met == ("yes" if number(seconds) <= 180 else "no")


def test_a_benchmark_script_refuses_bad_input_in_one_line(tmp_path):
    """Run as a user runs it: exit code 2, one line naming the problem and the fix, no report written."""
    missing, report = tmp_path / "no-such-folder", tmp_path / "report.md"
    command = [sys.executable, str(BENCHMARKS / "speed.py"), "--data-dir", str(missing), "--out", str(report)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"speed.py: error: --data-dir {missing} does not exist; pass a folder that holds MNIST/raw"
    assert not report.exists()


@pytest.mark.parametrize("bad", [["--data-dir", "{missing}"], ["--repeats", "0"], ["--steps", "-1"], ["--configs", "iwea"]])
def test_the_speed_benchmark_refuses_bad_input(benchmark_modules, bad, tmp_path, monkeypatch, capsys):
    speed = benchmark_modules
    argv = [arg.format(missing=tmp_path / "no-such-folder") for arg in bad] + ["--out", str(tmp_path / "report.md")]
    monkeypatch.setattr(sys, "argv", ["speed.py", *argv])
    assert speed.run_script(speed.main) == 2
    error = capsys.readouterr().err
    assert error.startswith("speed.py: error: ") and error.count("\n") == 1
    assert not (tmp_path / "report.md").exists()
