"""--jobs N: a suite's runs in worker processes, with the numbers of --jobs 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import metrics_of
from vaebench.execution.parallel import threads_per_job

PLUGINS = str(Path(__file__).parent / "plugins_for_tests")
NUMBERS = ("neg_elbo", "neg_elbo_kl", "is_nll", "nmi")


def cli(out, *extra, variants=("gaussian", "bernoulli-sfe"), epochs=3, plugins=()):
    return [sys.executable, "-m", "vaebench", *plugins, "run", *variants, "--dataset", "digits", "--hidden", "32", "--latent-dim", "4",
            "--epochs", str(epochs), "--is-samples", "20", "--seeds", "2", "--metrics", "elbo,is_nll,nmi", "--device", "cpu",
            "-q", "--out", str(out), *extra]


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGINS, os.environ.get("PYTHONPATH", "")]), "PYTHONUNBUFFERED": "1"}


def assert_same_runs(a: Path, b: Path, variants=("gaussian", "bernoulli-sfe"), seeds=(0, 1)):
    for variant in variants:
        for seed in seeds:
            x, y = metrics_of(a, variant, seed), metrics_of(b, variant, seed)
            assert x["status"] == y["status"] == "ok"
            for key in NUMBERS:
                assert x[key] == y[key], (variant, seed, key)
            hx = pd.read_csv(a / f"runs/{variant}/seed-{seed}/history.csv")
            hy = pd.read_csv(b / f"runs/{variant}/seed-{seed}/history.csv")
            pd.testing.assert_series_equal(hx["loss"], hy["loss"])


def test_jobs_2_gives_the_numbers_of_jobs_1_run_by_run(tmp_path):
    # at the workers' thread count: float32 sums round differently at another
    threads = {"OMP_NUM_THREADS": str(threads_per_job(2))}
    subprocess.run(cli(tmp_path / "one"), check=True, env={**env(), **threads}, capture_output=True)
    result = subprocess.run(cli(tmp_path / "two", "--jobs", "2"), env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_same_runs(tmp_path / "one", tmp_path / "two")
    board = pd.read_csv(tmp_path / "two/leaderboard.csv")
    assert set(board["run"]) == {"gaussian", "bernoulli-sfe"} and (board["seeds"] == 2).all()


def test_a_worker_that_dies_costs_only_its_own_run(tmp_path):
    result = subprocess.run(cli(tmp_path, "--jobs", "2", variants=("crash", "gaussian"), plugins=("-p", "vb_crash")), env=env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for seed in (0, 1):
        crashed = metrics_of(tmp_path, "crash", seed)
        assert crashed["status"] == "failed" and "worker process died (killed by signal 9)" in crashed["reason"]
        assert metrics_of(tmp_path, "gaussian", seed)["status"] == "ok"
    assert "run crash seed 0 failed: its worker process died" in result.stderr


def test_jobs_2_with_one_run_trains_it_in_the_command(tmp_path):
    result = subprocess.run(cli(tmp_path, "--jobs", "2", "--seeds", "1", variants=("gaussian",)), env=env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert metrics_of(tmp_path, "gaussian", 0)["status"] == "ok"


def test_jobs_must_be_a_positive_whole_number(tmp_path):
    result = subprocess.run(cli(tmp_path, "--jobs", "0"), env=env(), capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--jobs" in result.stderr


def _descendants_of(pid: int) -> list[int]:
    """Every process below ``pid``: the workers and any helper process multiprocessing starts."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    return children + [d for child in children for d in _descendants_of(child)]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the worker processes")
def test_a_killed_parallel_suite_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    long = dict(epochs=40)
    one_thread = {**env(), "OMP_NUM_THREADS": str(threads_per_job(2))}  # the workers' thread count
    subprocess.run(cli(tmp_path / "straight", **long), check=True, env=one_thread, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli(killed, "--jobs", "2", **long), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [killed / f"runs/{variant}/seed-{seed}" for variant in ("gaussian", "bernoulli-sfe") for seed in (0, 1)]

    def interrupted():  # runs with a checkpoint and no record yet: killed now, they resume mid-way
        return [r for r in runs if (r / "checkpoint.pt").exists() and not (r / "metrics.json").exists()]

    deadline = time.time() + 120  # a bound for a hung suite; the wait is for the state
    while not interrupted() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    workers = _descendants_of(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert interrupted(), "the kill came too late to test anything"
    deadline = time.time() + 30  # the workers notice their parent is gone and stop
    while not _stopped(workers) and time.time() < deadline:
        time.sleep(0.1)
    assert workers and _stopped(workers)
    result = subprocess.run(cli(killed, "--jobs", "2", "--resume", **long), env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_same_runs(tmp_path / "straight", killed)
    resumed = [json.loads((r / "metrics.json").read_text())["resumed_from_epoch"] for r in runs]
    assert any(r and r > 0 for r in resumed)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the command forks its workers' manager on Linux only")
def test_the_commands_workers_start_with_the_runs_imports_and_the_commands_environment(tmp_path):
    # vb_imports sets VAEBENCH_TEST_MARK when the command loads its plugins, after the manager was forked
    process = subprocess.Popen(cli(tmp_path, "--jobs", "2", plugins=("-p", "vb_imports")), env=env(), stderr=subprocess.PIPE, text=True)
    _, err = process.communicate()
    assert process.returncode == 0, err
    from vaebench.execution.worker_imports import RUN_MODULES

    for variant in ("gaussian", "bernoulli-sfe"):
        for seed in (0, 1):
            seen = json.loads((tmp_path / f"runs/{variant}/seed-{seed}/imports.json").read_text())
            assert seen["pid"] != process.pid  # a worker's
            assert seen["imported"] == list(RUN_MODULES) and seen["frozen"] > 100_000  # the imports' objects
            assert seen["mark"] == f"plugins loaded first in process {process.pid}"


def _stopped(pids) -> bool:
    return not any(Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text() for p in pids)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the worker processes")
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_an_interrupted_parallel_suite_stops_every_process_with_one_line(tmp_path, how):
    # as from a terminal: SIGINT at its default, whatever this test runner inherited (nohup, a background job ignore it)
    process = subprocess.Popen(cli(tmp_path, "--jobs", "2", epochs=400), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = [tmp_path / f"runs/{v}/seed-{s}/checkpoint.pt" for v in ("gaussian", "bernoulli-sfe") for s in (0, 1)]
    while sum(c.exists() for c in checkpoints) < 2 and process.poll() is None:  # both workers are training
        time.sleep(0.05)
    below = _descendants_of(process.pid)
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:  # Ctrl-C in a terminal signals the whole foreground process group
        os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate()
    assert process.returncode == (143 if how == "sigterm" else 130), err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "continue with --resume" in err
    assert below and _stopped(below)
    assert sum(c.exists() for c in checkpoints) >= 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the command forks its workers' manager on Linux only")
def test_a_killed_worker_manager_costs_the_unfinished_runs_and_nothing_else(tmp_path):
    process = subprocess.Popen(cli(tmp_path, "--jobs", "2", epochs=400), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    checkpoints = [tmp_path / f"runs/{v}/seed-{s}/checkpoint.pt" for v in ("gaussian", "bernoulli-sfe") for s in (0, 1)]
    while sum(c.exists() for c in checkpoints) < 2 and process.poll() is None:
        time.sleep(0.05)
    below = _descendants_of(process.pid)
    (manager,) = [int(p) for p in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
    os.kill(manager, signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode == 1 and "Traceback" not in err, err
    assert "4 of 4 run(s) failed" in err and "the process that starts the workers died (killed by signal 9)" in err
    for checkpoint in checkpoints:
        record = json.loads((checkpoint.parent / "metrics.json").read_text())
        assert record["status"] == "failed" and "continue with --resume" in record["reason"]
    deadline = time.time() + 30  # the workers notice their parent is gone and stop
    while not _stopped(below) and time.time() < deadline:
        time.sleep(0.1)
    assert _stopped(below)


def test_workers_take_the_environment_of_the_moment_their_task_is_given(tmp_path, monkeypatch):
    # the Python API's fork server starts now, with one environment; the runs are given out under another
    import vaebench
    from vaebench.execution.parallel import worker_context

    monkeypatch.setenv("VAEBENCH_TEST_MARK", "when the server started")
    monkeypatch.syspath_prepend(PLUGINS)
    worker_context()
    monkeypatch.setenv("VAEBENCH_TEST_MARK", "when the runs were given out")
    vaebench.run(["gaussian"], tmp_path, seeds=2, jobs=2, plugins=["vb_environment"], dataset="digits", hidden=(16,),
                 latent_dim=2, epochs=1, metrics=("elbo",), device="cpu")
    for seed in (0, 1):
        assert (tmp_path / f"runs/gaussian/seed-{seed}/environment.txt").read_text() == "when the runs were given out"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used on Linux only")
def test_workers_come_from_the_fork_server_or_are_spawned_where_it_cannot_start(monkeypatch):
    import multiprocessing.forkserver

    from vaebench.execution.parallel import worker_context

    assert worker_context().get_start_method() == "forkserver"

    def no_socket():
        raise PermissionError(13, "Permission denied", "/tmp/pymp-x/sock")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", no_socket)
    assert worker_context().get_start_method() == "spawn"
