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
    import train_profile

    yield speed, train_profile
    for name in ("speed", "train_profile", "is_trials"):
        sys.modules.pop(name, None)


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
    speed, _ = benchmark_modules
    out = tmp_path / "RESULTS.md"
    assert speed.main(["--data-dir", str(shared_data), "--repeats", "1", "--steps", "10", "--is-images", "2", "--out", str(out)]) == 0
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


def test_training_profile_accounts_for_the_whole_step(benchmark_modules, shared_data, tmp_path):
    _, train_profile = benchmark_modules
    out = tmp_path / "TRAIN_PROFILE.md"
    assert train_profile.main(["--data-dir", str(shared_data), "--rounds", "1", "--steps", "5", "--out", str(out)]) == 0
    text = out.read_text()
    rows = table_rows(text)
    kinds = [*train_profile.KINDS, "everything else"]
    profiled = float(re.search(r"\(([\d.]+) ms profiled\)", text).group(1))
    assert sum(number(rows[kind][0]) for kind in kinds) == pytest.approx(profiled, abs=0.01 * len(kinds))
    assert sum(number(rows[kind][1]) for kind in kinds) == pytest.approx(100, abs=len(kinds))
    assert number(rows[kinds[0]][0]) > 0  # the step's matrix products are seen
    eager, compiled = rows["first step's loss from seed 0, eager / compiled"][0].split(" / ")
    assert float(eager) == pytest.approx(float(compiled), rel=0.01)  # the same model and batch, other noise draws


def test_training_profile_without_a_cpp_compiler_reports_why(benchmark_modules, shared_data, tmp_path, monkeypatch):
    """A machine without a C++ compiler: the profile is still written, the compiled comparison says why not."""
    import torch

    _, train_profile = benchmark_modules
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # nothing compiled before can be reused
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    out = tmp_path / "TRAIN_PROFILE.md"
    assert train_profile.main(["--data-dir", str(shared_data), "--rounds", "1", "--steps", "3", "--out", str(out)]) == 0
    rows = table_rows(out.read_text())
    assert rows["compiled vs eager"][0].startswith("not measured: torch.compile failed on this machine (")
    assert number(rows["matrix products (mm, addmm)"][0]) > 0


def test_the_profile_sorts_ops_by_kind(benchmark_modules):
    _, train_profile = benchmark_modules
    assert train_profile.kind_of("aten::addmm") == "matrix products (mm, addmm)"
    assert train_profile.kind_of("aten::uniform_") == "random numbers (uniform_, normal_, randperm)"
    assert train_profile.kind_of("aten::_fused_adam_") == "optimizer (fused Adam, zero_grad, their Python)"
    assert train_profile.kind_of("Optimizer.zero_grad#Adam.zero_grad") == "optimizer (fused Adam, zero_grad, their Python)"
    assert train_profile.kind_of("aten::softplus") == "everything else"


def test_a_benchmark_script_refuses_bad_input_in_one_line(tmp_path):
    """Run as a user runs it: exit code 2, one line naming the problem and the fix, no report written."""
    missing, report = tmp_path / "no-such-folder", tmp_path / "report.md"
    command = [sys.executable, str(BENCHMARKS / "speed.py"), "--data-dir", str(missing), "--out", str(report)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"speed.py: error: --data-dir {missing} does not exist; pass a folder that holds MNIST/raw"
    assert not report.exists()


@pytest.mark.parametrize("script", ["is_trials", "train_profile"])
@pytest.mark.parametrize("bad", [["--data-dir", "{missing}"], ["--rounds", "0"], ["--epochs", "0"]])
def test_every_benchmark_script_refuses_bad_input(benchmark_modules, script, bad, tmp_path, monkeypatch, capsys):
    speed, _ = benchmark_modules
    module = __import__(script)
    argv = [arg.format(missing=tmp_path / "no-such-folder") for arg in bad] + ["--out", str(tmp_path / "report.md")]
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    assert speed.run_script(module.main) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{script}.py: error: ") and error.count("\n") == 1
    assert not (tmp_path / "report.md").exists()
