"""The command line beyond bad input (tests/test_bad_inputs.py holds that matrix)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import assert_one_line_error, run_cli


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "gaussian", "--device", "cuda", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--device cuda", "--device cpu")


def test_existing_runs_are_not_overwritten_without_resume(capsys, tmp_path):
    argv = ["run", "gaussian", "--budget", "smoke", "--hidden", "16", "--is-samples", "5", "--metrics", "elbo", "--out", str(tmp_path)]
    assert run_cli(capsys, *argv)[0] == 0
    before = (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "--resume")
    assert (tmp_path / "runs/gaussian/seed-0/metrics.json").read_text() == before


def test_list_and_plugins_json(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    rows = json.loads(out)
    variants = {r["name"]: r["plugin"] for r in rows if r["kind"] == "variant"}
    expected = {"gaussian", "bernoulli-sfe", "conditional", "gumbel-capacity", "mog-prior", "latent-opt", "ae-gmm", "kl-annealing"}
    assert code == 0 and expected <= set(variants) and variants["gaussian"] == "gaussian"
    assert {("prior", "vampprior"), ("objective", "iwae")} <= {(r["kind"], r["name"]) for r in rows}
    code, out, _ = run_cli(capsys, "plugins", "--json")
    records = {r["name"]: r for r in json.loads(out)}
    assert records["metrics"]["registered"]["metric"] == ["elbo", "is_nll", "gaps", "nmi", "latent_usage", "sample_quality", "throughput", "reference_nll", "pictures"]
    assert records["gaussian"]["hooks"] == ["register_variants"] and records["gaussian"]["status"] == "ok"
    assert records["gaussian"]["distribution"] == "vaebench" and records["gaussian"]["version"]


def test_the_readmes_cli_reference_lists_every_setting():
    from pathlib import Path

    from vaebench.settings import reference_lines

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for line in reference_lines():
        assert line in readme, line
