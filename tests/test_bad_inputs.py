"""The bad-input and fault matrix, as a hostile user would try it.

Each case ends with exit code 2, one line on stderr naming the problem and the fix,
no traceback, and nothing already computed lost, unless the case says otherwise.
The table below holds the inputs that need no prepared folder; the faults that need
one (a held lock, a changed --resume, a damaged checkpoint, a full disk...) follow it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import assert_one_line_error, metrics_of, run_cli, run_tiny

QUICK = ["--budget", "smoke", "--hidden", "16", "--latent-dim", "4", "--is-samples", "5", "--device", "cpu"]


def suite_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return str(path)


# (argv, needles): argv may use {tmp} for a scratch folder; "run" commands get --out {tmp}/o
MATRIX = [
    # names
    (["run", "no-such-variant"], ["unknown variant 'no-such-variant'", "gaussian"]),
    (["run", "gaussian", "--dataset", "cifar"], ["unknown dataset 'cifar'", "digits", "mnist"]),
    (["run", "gaussian", "--metrics", "fid2"], ["unknown metric 'fid2'", "is_nll"]),
    (["run", "gaussian", "--prior", "cauchy"], ["unknown prior 'cauchy'", "vampprior"]),
    (["run", "gaussian", "--objective", "wake-sleep"], ["unknown objective 'wake-sleep'", "iwae"]),
    (["run", "bernoulli-sfe", "--prior", "vampprior"], ["takes no prior", "gaussian"]),
    (["run", "latent-opt", "--objective", "iwae"], ["trains with its own objective", "gaussian"]),
    (["run"], ["no variant given", "--all"]),
    (["run", "gaussian", "--all"], ["not both"]),
    (["frobnicate"], ["invalid choice"]),
    # numbers and choices
    (["run", "gaussian", "--budget", "huge"], ["'budget'", "'huge'", "smoke"]),
    (["run", "gaussian", "--epochs", "0"], ["'epochs' (from --epochs) got '0'", "greater than 0"]),
    (["run", "gaussian", "--epochs", "-3"], ["'epochs'", "positive"]),
    (["run", "gaussian", "--epochs", "ten"], ["'epochs'", "'ten'"]),
    (["run", "gaussian", "--epochs", "2", "--steps", "5"], ["one budget unit", "--epochs and --steps"]),
    (["run", "gaussian", "--seconds", "nan"], ["'seconds'", "finite"]),
    (["run", "gaussian", "--seeds", "0"], ["seeds", "positive count"]),
    (["run", "gaussian", "--seeds", "a"], ["--seeds 'a'", "0,1,2"]),
    (["run", "gaussian", "--is-samples", "0"], ["'is_samples'", "greater than 0"]),
    (["run", "gaussian", "--is-samples", "-5"], ["'is_samples'"]),
    (["run", "gaussian", "--is-precision", "fp16"], ["'is_precision'", "bfloat16"]),
    (["run", "gaussian", "--batch-size", "-1"], ["'batch_size'"]),
    (["run", "gaussian", "--batch-size", "100000", "--budget", "smoke"], ["larger than the training set"]),
    (["run", "gaussian", "--binarization", "fuzzy"], ["'binarization'", "dynamic"]),
    (["run", "gaussian", "--binarization", "none"], ["Bernoulli likelihood", "--likelihood gaussian"]),
    (["run", "gaussian", "--device", "tpu"], ["'device'", "cpu"]),
    (["run", "gaussian", "--likelihood", "poisson"], ["'likelihood'", "gaussian"]),
    (["run", "gaussian", "--optimizer", "adagrad"], ["'optimizer'", "adam, adam-normgrad, adamax or sgd"]),
    (["run", "gaussian", "--lr", "nan"], ["'lr' (from --lr)", "finite"]),
    (["run", "gaussian", "--lr", "inf"], ["'lr'", "finite"]),
    (["run", "gaussian", "--lr", "-0.1"], ["'lr'", "greater than 0"]),
    (["run", "gaussian", "--hidden", ""], ["'hidden'", "widths"]),
    (["run", "gaussian", "--hidden", "a,b"], ["'hidden'", "widths"]),
    (["run", "gaussian", "--hidden", "400,0"], ["'hidden'", "positive"]),
    (["run", "gaussian", "--metrics", ","], ["'metrics'", "metric name"]),
    (["run", "gaussian", "--lr-milestones", "10,5"], ["'lr_milestones'", "increasing"]),
    (["run", "gaussian", "--val-images", "5000"], ["--val-images 5000", "choose fewer"]),
    # component options
    (["run", "gaussian", "--option", "gaussian.nope=1"], ["has no option 'nope'"]),
    (["run", "gumbel-capacity", "--option", "gumbel-capacity.gamma=lots"], ["gumbel-capacity.gamma", "'lots'", "finite number"]),
    (["run", "mog-prior", "--option", "mog-prior.components=0"], ["mog-prior.components", "greater than or equal to 1"]),
    (["run", "gumbel-capacity", "--option", "gumbel-capacity.capacity_z=-1"], ["capacity_z", ">= 0"]),
    (["run", "gumbel-capacity", "--option", "gumbel-capacity.temperature=0"], ["temperature", "> 0"]),
    (["run", "gumbel-capacity", "--option", "gumbel-capacity.gamma=inf"], ["gamma", "finite"]),
    (["run", "gaussian", "--option", "iwae.k=5"], ["is for 'iwae'", "does not use"]),
    (["run", "gaussian", "--option", "noequals"], ["KEY=VALUE"]),
    (["run", "kl-annealing", "--steps", "10"], ["kl-annealing schedules its KL weight over epochs"]),
    # files and folders
    (["run", "gaussian", "--out", "{tmp}/file.txt"], ["is a file"]),
    (["run", "gaussian", "--dataset", "mnist", "--data-dir", "{tmp}/nowhere"], ["--data-dir", "does not exist"]),
    (["run", "--suite", "{tmp}/absent.toml"], ["does not exist"]),
    (["run", "--extend", "gaussian"], ["--extend", "--resume"]),
    (["leaderboard", "{tmp}"], ["has no runs"]),
    (["leaderboard", "{tmp}/missing"], ["is not a folder"]),
    (["evaluate", "{tmp}"], ["has no runs"]),
]

SUITES = [
    ("variants = [gaussian\n", ["not valid TOML"]),
    ('variants = ["gaussian"]\nepoch = 3\n', ["suite.toml:2", "unknown key 'epoch'", "epochs"]),
    ("variants = {gaussian = 1}\n", ["suite.toml:1", "must be a list of variant names"]),
    ('variants = ["gaussian"]\nepochs = [1, 2]\n', ["'epochs' (from", "suite.toml:2", "got [1, 2]"]),
    ('variants = ["gaussian"]\nis_precision = "half"\n', ["suite.toml:2", "'half'", "bfloat16"]),
    ('variants = ["gaussian"]\nruns = 3\n', ["'runs' must be a table"]),
    ('[runs.x]\nvariant = "gaussian"\noptions = 3\n', ["options", "suite.toml:3", "must be a table"]),
    ('[runs.x]\nlr = 0.1\n', ["[runs.x]", "needs a variant"]),
    ('[grids.g]\nvariant = "gaussian"\noption = "beta"\nvalues = 3\n', ["[grids.g] values", "non-empty list"]),
    ('seeds = [0, 0]\nvariants = ["gaussian"]\n', ["seeds", "distinct"]),
]


@pytest.mark.parametrize("argv,needles", MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, needles):
    (tmp_path / "file.txt").write_text("keep me")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o" / "runs").exists()
    assert (tmp_path / "file.txt").read_text() == "keep me"


@pytest.mark.parametrize("text,needles", SUITES, ids=[t.splitlines()[0] for t, _ in SUITES])
def test_bad_suite_file_is_one_line_and_exit_2(capsys, tmp_path, text, needles):
    code, _, err = run_cli(capsys, "run", "--suite", suite_file(tmp_path, text), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_the_matrix_is_at_least_forty_cases():
    assert len(MATRIX) + len(SUITES) >= 40


def test_no_traceback_from_the_console_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vaebench", "run", "nope", "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- runs and results


def _run(capsys, out: Path, *extra):
    return run_cli(capsys, "run", "gaussian", *QUICK, "--metrics", "elbo", "--out", str(out), *extra)


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_dead_holders_lock_is_taken_over(capsys, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vaebench.execution.locking import OutLock; "
         "lock = OutLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = _run(capsys, tmp_path)
        assert_one_line_error(code, err, "in use by another vaebench", f"process {holder.pid}", "choose another --out")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".vaebench.lock").exists()  # a stale lock file from a killed process...
    code, _, err = _run(capsys, tmp_path)
    assert code == 0, err  # ...is taken over


def test_resume_with_changed_settings_is_refused_listing_the_differences(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    before = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    code, _, err = _run(capsys, tmp_path, "--resume", "--lr", "3e-3", "--hidden", "32")
    assert_one_line_error(code, err, "--resume with settings that differ", "lr 0.001 -> 0.003", "hidden [16] -> [32]")
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == before
    # the metrics change no training: another --metrics resumes, and the finished run is kept as it was
    assert _run(capsys, tmp_path, "--resume", "--metrics", "nmi")[0] == 0
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == before


def test_extend_trains_a_finished_run_on_and_records_both_budgets(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    code, _, err = _run(capsys, tmp_path, "--resume", "--epochs", "4")
    assert_one_line_error(code, err, "epochs 2 -> 4", "--extend")
    assert _run(capsys, tmp_path, "--resume", "--extend", "--epochs", "4")[0] == 0
    m = metrics_of(tmp_path, "gaussian")
    assert m["epochs_run"] == 4 and m["resumed_from_epoch"] == 2 and m["budget_history"] == [{"epochs": 2}, {"epochs": 4}]
    history = [json.loads(line) for line in (tmp_path / "runs/gaussian/seed-0/metrics_history.jsonl").read_text().splitlines()]
    assert history[0]["epochs_run"] == 2  # the 2-epoch record is kept


def test_a_checkpoint_without_metrics_needs_resume(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    (tmp_path / "runs/gaussian/seed-0/metrics.json").unlink()  # as if killed before it finished
    code, _, err = _run(capsys, tmp_path)
    assert_one_line_error(code, err, "checkpoint of an interrupted run", "--resume", "fresh --out")


def test_out_holding_another_suites_runs_is_refused(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    code, _, err = run_cli(capsys, "run", "mog-prior", *QUICK, "--metrics", "elbo", "--batch-size", "64", "--out", str(tmp_path))
    assert_one_line_error(code, err, "holds runs of another suite", "batch_size 128 -> 64")
    assert not (tmp_path / "runs/mog-prior").exists()


def test_a_suite_record_older_than_a_setting_reads_it_as_its_default(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    suite_file = tmp_path / "suite.json"
    recorded = json.loads(suite_file.read_text())
    del recorded["settings"]["adam_eps"]  # as written before the setting existed
    suite_file.write_text(json.dumps(recorded))
    assert _run(capsys, tmp_path, "--resume")[0] == 0
    recorded["settings"]["adam_eps"] = 1e-4  # a recorded value that differs still refuses
    suite_file.write_text(json.dumps(recorded))
    code, _, err = _run(capsys, tmp_path, "--resume")
    assert_one_line_error(code, err, "holds runs of another suite", "adam_eps 0.0001 -> 1e-08")


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_a_damaged_checkpoint_restarts_its_run_and_keeps_the_others(capsys, tmp_path, damage):
    run_tiny(tmp_path, ["gaussian", "mog-prior"], epochs=2, metrics=["elbo"])
    kept = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    run_dir = tmp_path / "runs/mog-prior/seed-0"
    (run_dir / "metrics.json").unlink()
    (run_dir / "checkpoint.pt").write_bytes(damage)
    code, _, err = run_cli(capsys, "run", "gaussian", "mog-prior", "--epochs", "2", "--hidden", "32", "--latent-dim", "4",
                           "--is-samples", "20", "--device", "cpu", "--metrics", "elbo", "--out", str(tmp_path), "--resume", "-q")
    assert code == 0, err
    assert f"{run_dir / 'checkpoint.pt'} cannot be read" in err and "from the start" in err
    assert "weights_only=False" not in err  # never advise loading untrusted pickles
    assert (run_dir / "checkpoint.pt.damaged").read_bytes() == damage
    assert metrics_of(tmp_path, "mog-prior")["status"] == "ok" and metrics_of(tmp_path, "mog-prior")["resumed_from_epoch"] == 0
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == kept


def test_temporary_files_of_a_killed_writer_are_cleaned_up(capsys, tmp_path):
    assert _run(capsys, tmp_path)[0] == 0
    stray = tmp_path / "runs/gaussian/seed-0/.checkpoint.pt.abc123.tmp"
    stray.write_bytes(b"half")
    assert _run(capsys, tmp_path, "--resume")[0] == 0
    assert not stray.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_files_follow_the_users_umask(capsys, tmp_path, umask):
    old = os.umask(umask)
    try:
        assert _run(capsys, tmp_path)[0] == 0
    finally:
        os.umask(old)
    for name in ("metrics.json", "config.json", "model.safetensors", "checkpoint.pt"):
        mode = stat.S_IMODE((tmp_path / "runs/gaussian/seed-0" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
    assert stat.S_IMODE((tmp_path / "leaderboard.md").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EACCES"])
def test_an_out_that_cannot_be_written_is_one_line_and_keeps_finished_runs(capsys, tmp_path, monkeypatch, errno_name):
    import errno

    import vaebench.atomic

    assert _run(capsys, tmp_path)[0] == 0
    kept = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    real = vaebench.atomic.write_atomic

    def failing(path, write):
        if "mog-prior" in str(path):
            raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(path))
        return real(path, write)

    monkeypatch.setattr(vaebench.atomic, "write_atomic", failing)
    code, _, err = run_cli(capsys, "run", "gaussian", "mog-prior", *QUICK, "--metrics", "elbo", "--out", str(tmp_path), "--resume")
    assert_one_line_error(code, err, "cannot write", "mog-prior", "choose another --out")
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == kept


@pytest.mark.parametrize("content", ["null", "{not json", ""])
def test_leaderboard_skips_an_unreadable_record_with_a_warning(capsys, tmp_path, content):
    run_tiny(tmp_path, ["gaussian", "mog-prior"], epochs=1, metrics=["elbo"])
    broken = tmp_path / "runs/mog-prior/seed-0/metrics.json"
    broken.write_text(content)
    code, out, err = run_cli(capsys, "leaderboard", str(tmp_path), "--format", "csv")
    assert code == 0 and "gaussian" in out and "mog-prior" not in out
    assert f"skipping {broken}" in err and err.count("\n") == 1


def test_sigterm_checkpoints_says_so_and_exits_143(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "vaebench", "run", "bernoulli-sfe", "--epochs", "400", "--hidden", "32", "--metrics", "elbo",
         "--device", "cpu", "--out", str(tmp_path), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    checkpoint = tmp_path / "runs/bernoulli-sfe/seed-0/checkpoint.pt"
    while not checkpoint.exists() and process.poll() is None:  # wait for a state, not a time
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate()
    assert process.returncode == 143
    assert "terminated (SIGTERM)" in err and "continue with --resume" in err and "Traceback" not in err
    assert checkpoint.exists() and not (tmp_path / ".vaebench.pid").exists()


def test_an_out_folder_vaebench_did_not_write_is_never_overwritten(tmp_path, capsys):
    import hashlib

    from helpers import assert_one_line_error, run_cli

    foreign = tmp_path / "other-tool"
    foreign.mkdir()
    for name, text in (("leaderboard.csv", "a,b\n1,2\n"), ("leaderboard.md", "# another tool\n"), ("suite.json", "{}\n")):
        (foreign / name).write_text(text)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in foreign.iterdir()}
    code, _, err = run_cli(capsys, "run", "gaussian", "--budget", "smoke", "--hidden", "8", "--latent-dim", "2", "--out", str(foreign))
    assert_one_line_error(code, err, "holds files vaebench did not write", "leaderboard.csv", "empty or new folder")
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in foreign.iterdir()} == before  # nothing touched
    ours = tmp_path / "ours"
    argv = ["run", "gaussian", "--budget", "smoke", "--hidden", "8", "--latent-dim", "2", "--metrics", "elbo", "-q", "--out", str(ours)]
    assert run_cli(capsys, *argv)[0] == 0 and (ours / ".vaebench-output").exists()
    assert run_cli(capsys, *argv, "--resume")[0] == 0  # its own folder: accepted
    (ours / ".vaebench-output").unlink()  # a folder written before the marker is recognised by its run records
    assert run_cli(capsys, *argv, "--resume")[0] == 0
