"""Bad input: one line on stderr naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vaebench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vaebench: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["run", "no-such-variant"], ["unknown variant 'no-such-variant'", "gaussian"]),
        (["run", "gaussian", "--dataset", "cifar"], ["unknown dataset 'cifar'", "digits", "mnist"]),
        (["run", "gaussian", "--metrics", "fid"], ["unknown metric 'fid'", "is_nll"]),
        (["run", "gaussian", "--budget", "huge"], ["unknown budget 'huge'", "smoke"]),
        (["run", "gaussian", "--epochs", "0"], ["--epochs", "positive"]),
        (["run", "gaussian", "--epochs", "-3"], ["--epochs"]),
        (["run", "gaussian", "--epochs", "ten"], ["--epochs", "'ten'"]),
        (["run", "gaussian", "--seeds", "0"], ["--seeds"]),
        (["run", "gaussian", "--is-samples", "0"], ["--is-samples"]),
        (["run", "gaussian", "--is-precision", "fp16"], ["unknown IS precision 'fp16'", "bfloat16"]),
        (["run", "gaussian", "--batch-size", "-1"], ["--batch-size"]),
        (["run", "gaussian", "--batch-size", "100000", "--budget", "smoke"], ["larger than the training set"]),
        (["run", "gaussian", "--binarization", "fuzzy"], ["binarization", "dynamic"]),
        (["run", "gaussian", "--binarization", "none"], ["Bernoulli likelihood", "--likelihood gaussian"]),
        (["run", "gaussian", "--device", "tpu"], ["unknown device 'tpu'"]),
        (["run", "gaussian", "--likelihood", "poisson"], ["unknown likelihood 'poisson'", "gaussian"]),
        (["run"], ["no variant given", "--all"]),
        (["run", "gaussian", "--option", "gaussian.nope=1"], ["has no option 'nope'"]),
        (["run", "gumbel-capacity", "--option", "gumbel-capacity.gamma=lots"], ["gamma"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, needles):
    code, out, err = run_cli(capsys, *argv, *(["--out", str(tmp_path / "o")] if argv and argv[0] == "run" else []))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "gaussian", "--device", "cuda", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--device cuda", "--device cpu")


def test_out_pointing_at_a_file(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "run", "gaussian", "--budget", "smoke", "--out", str(target))
    assert_one_line_error(code, err, "is a file")
    assert target.read_text() == "keep me"


def test_missing_data_dir(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "gaussian", "--dataset", "mnist", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--data-dir", "does not exist")


def test_leaderboard_of_a_folder_without_runs(capsys, tmp_path):
    code, _, err = run_cli(capsys, "leaderboard", str(tmp_path))
    assert_one_line_error(code, err, "has no runs")
    code, _, err = run_cli(capsys, "leaderboard", str(tmp_path / "missing"))
    assert_one_line_error(code, err, "is not a folder")


def test_suite_toml_errors(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("variants = [gaussian\n")
    code, _, err = run_cli(capsys, "run", "--suite", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('variants = ["gaussian"]\nepoch = 3\n')
    code, _, err = run_cli(capsys, "run", "--suite", str(unknown), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "unknown key 'epoch'", "epochs")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('variants = ["gaussian"]\nis_precision = "half"\n')
    code, _, err = run_cli(capsys, "run", "--suite", str(wrong), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "unknown IS precision 'half'", "float32", "bfloat16")
    code, _, err = run_cli(capsys, "run", "--suite", str(tmp_path / "absent.toml"))
    assert_one_line_error(code, err, "does not exist")


def test_existing_runs_are_not_overwritten_without_resume(capsys, tmp_path):
    argv = ["run", "gaussian", "--budget", "smoke", "--hidden", "16", "--is-samples", "5", "--metrics", "elbo", "--out", str(tmp_path)]
    assert run_cli(capsys, *argv)[0] == 0
    before = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "--resume")
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == before


def test_no_traceback_from_the_console_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vaebench", "run", "nope", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_list_and_plugins_json(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    rows = json.loads(out)
    variants = {r["name"]: r["plugin"] for r in rows if r["kind"] == "variant"}
    expected = {"gaussian", "bernoulli-sfe", "conditional", "gumbel-capacity", "mog-prior", "latent-opt", "ae-gmm", "kl-annealing"}
    assert code == 0 and expected <= set(variants) and variants["gaussian"] == "gaussian"
    code, out, _ = run_cli(capsys, "plugins", "--json")
    records = {r["name"]: r for r in json.loads(out)}
    assert records["metrics"]["registered"]["metric"] == ["elbo", "is_nll", "nmi", "throughput", "pictures"]
    assert records["gaussian"]["hooks"] == ["register_variants"] and records["gaussian"]["status"] == "ok"
