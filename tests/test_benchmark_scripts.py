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
                       "--out", str(out)]) == 0
    rows = table_rows(out.read_text())
    for key in ("reference loop (pytorch/examples style: DataLoader + ToTensor, `.item()` per step)",
                "vaebench model, bare loop (on-device data, no runner)", "IS-NLL, K = 1000"):
        assert number(rows[key][0]) > 0
    training = rows["training ≥ 2.5× the reference loop"]
    ratio = float(re.search(r"harness ([\d.]+)×", training[0]).group(1))
    assert training[1] == ("yes" if ratio >= 2.5 else "no")
    overhead = rows["harness overhead ≤ 5% over the bare loop"]
    assert overhead[1] == ("yes" if number(overhead[0]) <= 5 else "no")
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


@pytest.mark.parametrize("bad", [["--data-dir", "{missing}"], ["--repeats", "0"], ["--steps", "-1"]])
def test_the_speed_benchmark_refuses_bad_input(benchmark_modules, bad, tmp_path, monkeypatch, capsys):
    speed = benchmark_modules
    argv = [arg.format(missing=tmp_path / "no-such-folder") for arg in bad] + ["--out", str(tmp_path / "report.md")]
    monkeypatch.setattr(sys, "argv", ["speed.py", *argv])
    assert speed.run_script(speed.main) == 2
    error = capsys.readouterr().err
    assert error.startswith("speed.py: error: ") and error.count("\n") == 1
    assert not (tmp_path / "report.md").exists()
