"""--executor ray on a local Ray instance: the numbers of --jobs 1, a dying task reported, resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import metrics_of
from vaebench.cli import main

PLUGINS = str(Path(__file__).parent / "plugins_for_tests")
RUN = ["run", "--dataset", "digits", "--hidden", "16", "--latent-dim", "3", "--epochs", "2", "--is-samples", "10",
       "--seeds", "2", "--metrics", "elbo,is_nll", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'vaebench[ray]')")
    path = os.pathsep.join(filter(None, [PLUGINS, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_tasks_give_the_numbers_of_jobs_1_report_a_dying_task_and_resume(ray_instance, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.syspath_prepend(PLUGINS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task's (--cpus-per-run 1): float32 sums round differently at another thread count
    try:
        assert main([*RUN, "gaussian", "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ray"
    assert main(["-p", "vb_crash", *RUN, "crash", "gaussian", "--executor", "ray", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "run crash seed 0 failed: its Ray task failed after Ray's retry" in err and "Traceback" not in err
    for seed in (0, 1):
        a, b = metrics_of(tmp_path / "one", "gaussian", seed), metrics_of(out, "gaussian", seed)
        assert b["status"] == "ok" and all(a[k] == b[k] for k in ("neg_elbo", "neg_elbo_kl", "is_nll")), seed
        assert metrics_of(out, "crash", seed)["status"] == "failed"
    finished = (out / "runs/gaussian/seed-1/metrics.json").stat().st_mtime_ns
    assert main([*RUN, "gaussian", "--executor", "ray", "--out", str(out), "--resume"]) == 0
    assert (out / "runs/gaussian/seed-1/metrics.json").stat().st_mtime_ns == finished  # kept, not run again
    assert "kept 2 finished run(s)" in capsys.readouterr().out


def test_ray_flags_without_ray_and_jobs_with_ray_are_refused(tmp_path, capsys):
    assert main([*RUN, "gaussian", "--ray-address", "localhost:6379", "--out", str(tmp_path)]) == 2
    assert "go with --executor ray" in capsys.readouterr().err
    assert main([*RUN, "gaussian", "--executor", "ray", "--jobs", "2", "--out", str(tmp_path)]) == 2
    assert "--jobs is for --executor local" in capsys.readouterr().err
